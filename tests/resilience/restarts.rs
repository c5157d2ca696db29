//! Restarts of kube-apiserver, etcd and the emulator while a gateway is being created (and, in
//! soak, deleted).

use super::*;

fn wait_pending_gateway(s: &Scenario<'_>, ep: Ep) {
    s.wait(
        "a gateway operation in flight",
        Duration::from_secs(120),
        |s| {
            s.cluster.endpoint(&s.ns, &ep.name()).is_some_and(|o| {
                o["status"]["pendingOperations"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|x| x["step"] == "Gateway"))
            })
        },
    );
}

/// Restarts each of `order` in turn (SIGKILL, then the same command), 2 s apart, and counts them.
fn restart_each(
    s: &mut Scenario<'_>,
    plane: &ControlPlane,
    order: &[&'static str],
    restarts: &mut BTreeMap<&'static str, u64>,
) {
    for what in order {
        match *what {
            "emulator" => s.restart_emulator(),
            "apiserver" => {
                plane.restart_apiserver().unwrap();
            }
            "etcd" => {
                plane.restart_etcd().unwrap();
            }
            _ => unreachable!(),
        }
        *restarts.entry(what).or_default() += 1;
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[test]
fn apiserver_etcd_and_emulator_restarts_mid_operation_end_converged() {
    let _s = serial();
    // Its own control plane: restarting it disturbs no other test.
    let plane = ControlPlane::start().unwrap_or_else(|e| panic!("control plane: {e:#}"));
    Cluster::new(&plane)
        .retrying(Duration::from_secs(60))
        .install_crds()
        .unwrap();
    let order: Vec<Vec<&'static str>> = if soak() {
        vec![
            vec!["emulator"],
            vec!["apiserver"],
            vec!["etcd"],
            vec!["emulator", "apiserver", "etcd"],
            vec!["etcd", "emulator", "apiserver"],
        ]
    } else {
        vec![vec!["emulator", "apiserver", "etcd"]]
    };
    let mut restarts: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (t, order) in order.iter().enumerate() {
        let (n, scale) = if soak() { (2, 0.05) } else { (1, 0.03) };
        let mut s = Scenario::new(&plane, &format!("res-restart-{t}"), n, scale);
        let t0 = Instant::now();
        for ep in s.eps.clone() {
            s.plant_oob(ep);
        }
        s.start_operator();
        s.apply_all("Delete");
        let first = s.eps[0];
        // Mid-operation: the first gateway's creation is running.
        wait_pending_gateway(&s, first);
        restart_each(&mut s, &plane, order, &mut restarts);
        eprintln!(
            "resilience: restart trial {t}: {order:?} done {:.0} s after the apply",
            t0.elapsed().as_secs_f64()
        );
        s.wait_ready("Ready after the restarts", Duration::from_secs(240));
        eprintln!(
            "resilience: restart trial {t}: Ready {:.0} s after the apply",
            t0.elapsed().as_secs_f64()
        );
        s.check_converged(&format!("restart trial {t} create"));
        if soak() {
            // And while deleting: the same restarts during the gateways' deletion.
            for ep in s.eps.clone() {
                s.cluster
                    .ok(&["delete", "sfe", &ep.name(), "-n", &s.ns, "--wait=false"])
                    .unwrap();
            }
            std::thread::sleep(Duration::from_secs(1));
            restart_each(&mut s, &plane, order, &mut restarts);
            s.wait("the endpoints deleted", Duration::from_secs(240), |s| {
                s.eps
                    .iter()
                    .all(|e| s.cluster.endpoint_gone(&s.ns, &e.name()))
            });
            s.check_no_duplicates(&[]);
            s.check_oob();
            s.check_rate(&format!("restart trial {t} delete"));
        }
    }
    eprintln!(
        "resilience: restarts: {restarts:?}; worst {:.0} requests/min per endpoint",
        *WORST_RPM.lock().unwrap()
    );
}
