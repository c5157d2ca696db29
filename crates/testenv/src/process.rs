//! Child processes that cannot outlive their owner.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process. So a
//! dedicated guardian thread spawns the children and then waits for a stop request: while the
//! owner lives, the thread lives; if the whole process dies, the kernel kills the children.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// What the guardian thread is asked to do.
enum Request {
    Stop,
    /// SIGKILL child `index`, then spawn it again with the same arguments (its log is appended
    /// to); answers with the new pid.
    Restart(usize, mpsc::Sender<anyhow::Result<u32>>),
}

pub(crate) struct Guardian {
    pub(crate) pids: Vec<u32>,
    stop: mpsc::Sender<Request>,
    status: mpsc::Receiver<String>,
    thread: Option<JoinHandle<()>>,
}

impl Guardian {
    /// Spawns each `(program, args, log name)` with output to `<dir>/<log name>.log`, in order.
    pub(crate) fn spawn(
        dir: &Path,
        procs: Vec<(PathBuf, Vec<String>, &'static str)>,
    ) -> anyhow::Result<Self> {
        let (stop_tx, stop_rx) = mpsc::channel::<Request>();
        let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<Vec<u32>>>();
        let (status_tx, status_rx) = mpsc::channel::<String>();
        let dir = dir.to_owned();
        let thread = std::thread::Builder::new()
            .name("testenv-guardian".into())
            .spawn(move || {
                let mut children: Vec<(Child, &'static str)> = Vec::new();
                for (program, args, name) in &procs {
                    match spawn_one(&dir, program, args, name, false) {
                        Ok(c) => children.push((c, name)),
                        Err(e) => {
                            kill_all(&mut children);
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    }
                }
                let _ = ready_tx.send(Ok(children.iter().map(|(c, _)| c.id()).collect()));
                // Wait for stop, and report an early exit of any child so start-up fails fast.
                loop {
                    match stop_rx.recv_timeout(std::time::Duration::from_millis(200)) {
                        Ok(Request::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                        Ok(Request::Restart(i, answer)) => {
                            let (program, args, name) = &procs[i];
                            let (old, _) = &mut children[i];
                            let _ = old.kill();
                            let _ = old.wait();
                            let result = spawn_one(&dir, program, args, name, true).map(|c| {
                                let pid = c.id();
                                children[i].0 = c;
                                pid
                            });
                            let _ = answer.send(result);
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            for (c, name) in children.iter_mut() {
                                if let Ok(Some(st)) = c.try_wait() {
                                    let _ =
                                        status_tx.send(format!("{name} exited early with {st}"));
                                }
                            }
                        }
                    }
                }
                kill_all(&mut children);
            })?;
        let pids = ready_rx.recv()??;
        Ok(Guardian {
            pids,
            stop: stop_tx,
            status: status_rx,
            thread: Some(thread),
        })
    }

    /// A message if a child exited on its own.
    pub(crate) fn exited(&mut self) -> Option<String> {
        self.status.try_recv().ok()
    }

    /// Kills child `index` (SIGKILL: a crash, no chance to clean up) and starts it again with the
    /// same arguments, so the same ports, certificates and data directory.
    pub(crate) fn restart(&mut self, index: usize) -> anyhow::Result<u32> {
        let (tx, rx) = mpsc::channel();
        self.stop
            .send(Request::Restart(index, tx))
            .map_err(|_| anyhow::anyhow!("the guardian thread is gone"))?;
        let pid = rx.recv()??;
        self.pids[index] = pid;
        Ok(pid)
    }

    /// Ends the children (SIGTERM, then SIGKILL) and waits for them.
    pub(crate) fn stop(mut self) {
        let _ = self.stop.send(Request::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn spawn_one(
    dir: &Path,
    program: &Path,
    args: &[String],
    name: &str,
    append: bool,
) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(dir.join(format!("{name}.log")))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| anyhow::anyhow!("spawning {}: {e}", program.display()))
}

/// Stops in reverse order (apiserver before etcd), gracefully first.
fn kill_all(children: &mut Vec<(Child, &'static str)>) {
    while let Some((mut c, _)) = children.pop() {
        // SAFETY: sending a signal to our own child by pid.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match c.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                _ => {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
            }
        }
    }
}
