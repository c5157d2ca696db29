//! Child processes that cannot outlive their owner.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process: a
//! test's own thread, or a tokio blocking thread, may end while the process (and the child's
//! owner) lives on. So every child is forked by one guardian thread that lives as long as the
//! process. If the process dies, however it dies, the kernel kills the children; while it lives,
//! each [`Process`] is stopped by its owner (SIGKILL when dropped).

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// How to start a child: what [`Process::restart`] starts again.
#[derive(Clone, Debug)]
pub struct Spec {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Set on top of the inherited environment; a later entry wins over an earlier one.
    pub env: Vec<(String, String)>,
    /// Where stderr, and stdout unless it is piped, are appended.
    pub log: PathBuf,
    /// Hand stdout to the owner ([`Process::take_stdout`]) instead of the log.
    pub pipe_stdout: bool,
}

impl Spec {
    pub fn new(program: impl Into<PathBuf>, log: impl Into<PathBuf>) -> Spec {
        Spec {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            log: log.into(),
            pipe_stdout: false,
        }
    }

    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Spec {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn envs<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Spec {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    pub fn pipe_stdout(mut self) -> Spec {
        self.pipe_stdout = true;
        self
    }

    fn command(&self) -> anyhow::Result<Command> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stderr(log.try_clone()?);
        if self.pipe_stdout {
            cmd.stdout(Stdio::piped());
        } else {
            cmd.stdout(log);
        }
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(cmd)
    }
}

type Fork = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `cmd` from the guardian thread, started on first use and never ended.
fn fork(cmd: Command) -> std::io::Result<Child> {
    static GUARDIAN: OnceLock<mpsc::Sender<Fork>> = OnceLock::new();
    let guardian = GUARDIAN.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Fork>();
        std::thread::Builder::new()
            .name("testenv-guardian".into())
            .spawn(move || {
                for (mut cmd, answer) in rx {
                    let _ = answer.send(cmd.spawn());
                }
            })
            .expect("starting the guardian thread");
        tx
    });
    let (tx, rx) = mpsc::channel();
    let gone = || std::io::Error::other("the guardian thread is gone");
    guardian.send((cmd, tx)).map_err(|_| gone())?;
    rx.recv().map_err(|_| gone())?
}

/// A running child. Dropping it kills the child (SIGKILL).
pub struct Process {
    spec: Spec,
    child: Option<Child>,
    pid: u32,
}

impl Process {
    pub fn start(spec: Spec) -> anyhow::Result<Process> {
        let child = Self::spawn(&spec)?;
        Ok(Process {
            pid: child.id(),
            child: Some(child),
            spec,
        })
    }

    fn spawn(spec: &Spec) -> anyhow::Result<Child> {
        fork(spec.command()?).with_context(|| format!("spawning {}", spec.program.display()))
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The name of its log file without the extension (`etcd`, `emulator`, …).
    pub fn name(&self) -> String {
        self.spec
            .log
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The pid of the child last started.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its stdout, when the [`Spec`] pipes it (once).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.as_mut()?.stdout.take()
    }

    /// How it ended, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// SIGKILL, as a crash: no chance to clean up. Waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then SIGKILL if it has not ended after `grace`. Waits for it.
    pub fn terminate(&mut self, grace: Duration) {
        let Some(c) = self.child.as_mut() else {
            return;
        };
        // SAFETY: sending a signal to our own child, not yet reaped.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !matches!(c.try_wait(), Ok(None)) {
                self.child = None;
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    /// Kills the child (SIGKILL) and starts it again from the same [`Spec`]; its log is
    /// appended to. Returns the new pid.
    pub fn restart(&mut self) -> anyhow::Result<u32> {
        self.kill();
        let child = Self::spawn(&self.spec)?;
        self.pid = child.id();
        self.child = Some(child);
        Ok(self.pid)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
