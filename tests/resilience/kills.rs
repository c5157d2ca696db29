//! SIGKILLs of the operator while it converges several endpoints.

use super::*;

#[test]
fn twenty_random_sigkills_during_convergence_of_several_endpoints() {
    let _s = serial();
    let plane = plane();
    let (trials, n, kills) = if soak() { (3, 4, 20) } else { (1, 3, 20) };
    let mut rng = Rng::seeded("resilience: sigkills");
    let mut during = 0;
    for t in 0..trials {
        // Slow operations (a gateway takes 15 s), so the kills land while work is in flight.
        let mut s = Scenario::new(plane, &format!("res-kill-{t}"), n, 0.05);
        for ep in s.eps.clone() {
            s.plant_oob(ep);
        }
        s.start_operator();
        s.apply_all("Retain");
        for _ in 0..kills {
            std::thread::sleep(rng.millis(500, 2500));
            let converged = s.eps.iter().all(|e| {
                s.cluster
                    .endpoint(&s.ns, &e.name())
                    .is_some_and(|o| is_ready(&o))
            });
            if !converged {
                during += 1;
            }
            s.op().restart().unwrap();
        }
        s.wait_ready("Ready after the SIGKILLs", Duration::from_secs(240));
        s.check_converged(&format!("sigkill trial {t}"));
        // And it stays converged: nothing is written once Ready.
        let writes_before = s.rt_block(s.emu.control.operator_requests()).unwrap().1;
        std::thread::sleep(Duration::from_secs(8));
        assert_eq!(
            s.rt_block(s.emu.control.operator_requests()).unwrap().1,
            writes_before,
            "the operator kept writing after converging"
        );
        // Retain: the objects go, Azure stays; no endpoint is left for later tests' operators.
        s.cluster
            .ok(&["delete", "sfe", "--all", "-n", &s.ns, "--timeout=60s"])
            .unwrap();
        s.check_no_duplicates(&s.eps);
    }
    assert!(during > 0, "no kill landed during convergence");
    eprintln!(
        "resilience: sigkills: {trials} trial(s) x {kills} SIGKILLs ({during} during convergence) over {n} endpoints; worst {:.0} requests/min per endpoint",
        *WORST_RPM.lock().unwrap()
    );
}
