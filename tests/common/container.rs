//! A throwaway host with real systemd as PID 1: the cached Debian rootfs booted in
//! `systemd-nspawn --volatile=overlay`, its D-Bus socket bound to a private directory.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::Run;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The rootfs, built once by tests/harness/rootfs.sh (cached; rebuilt when missing).
pub fn rootfs() -> PathBuf {
    rootfs_of("bookworm")
}

/// The rootfs of `release` (bookworm, bullseye, trixie or al2023-layout), built once and cached.
pub fn rootfs_of(release: &str) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/harness/rootfs.sh");
    let out = Command::new(script).arg(release).output().expect("run tests/harness/rootfs.sh");
    assert!(out.status.success(), "rootfs build failed: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).lines().last().expect("rootfs path").trim())
}

/// The stand-in service binary, built next to the hostd binary by tests/run.sh.
pub fn standin() -> PathBuf {
    let p = Path::new(super::BIN).with_file_name("agentkeys-standin");
    assert!(
        p.exists(),
        "{} is missing: build it with `cargo build -p agentkeys-standin` (tests/run.sh does)",
        p.display()
    );
    p
}

pub struct Container {
    child: Child,
    pub leader: u32,
    _bus: tempfile::TempDir,
    _slot: Slot,
}

/// At most `MAX_CONTAINERS` containers at once per test process (2 cores; boots are CPU-bound).
const MAX_CONTAINERS: usize = 4;
static RUNNING: (std::sync::Mutex<usize>, std::sync::Condvar) = (std::sync::Mutex::new(0), std::sync::Condvar::new());

struct Slot;

impl Slot {
    fn take() -> Slot {
        let mut n = RUNNING.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while *n >= MAX_CONTAINERS {
            n = RUNNING.1.wait(n).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *n += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *RUNNING.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) -= 1;
        RUNNING.1.notify_one();
    }
}

impl Container {
    /// Boot, wait for `running`, install hostd, the stand-ins and `config` as hostd.toml.
    pub fn boot(config: &str) -> Container {
        Self::boot_on(config, None)
    }

    /// As [`Container::boot`], in the network namespace `/run/netns/NETNS` (which a test made, e.g.
    /// where moto runs) instead of a private one of its own.
    pub fn boot_in_netns(config: &str, netns: &str) -> Container {
        Self::boot_on(config, Some(netns))
    }

    /// As [`Container::boot`], from the rootfs of `release`, with the stand-in at `standin` (one
    /// built for that release's glibc) and hostd's binary left for its package to install.
    pub fn boot_release(release: &str, standin: &Path, config: &str) -> Container {
        let c = Self::boot_from(&rootfs_of(release), None);
        c.install_standins(standin, false);
        c.write("/etc/agentkeys/hostd.toml", config);
        c
    }

    fn boot_on(config: &str, netns: Option<&str>) -> Container {
        let c = Self::boot_from(&rootfs(), netns);
        // AGENTKEYS_HOSTD_BIN: another build of hostd to install (the stress loop compares builds).
        let bin = std::env::var("AGENTKEYS_HOSTD_BIN").unwrap_or_else(|_| super::BIN.to_owned());
        c.install(&bin, "/usr/bin/agentkeys-hostd");
        c.install_standins(&standin(), false);
        c.write("/etc/agentkeys/hostd.toml", config);
        c
    }

    /// Boot `rootfs` and wait for `running` (or `degraded`).
    fn boot_from(rootfs: &Path, netns: Option<&str>) -> Container {
        let network = netns
            .map_or_else(|| "--private-network".to_owned(), |n| format!("--network-namespace-path=/run/netns/{n}"));
        let slot = Slot::take();
        let bus = tempfile::tempdir().unwrap();
        let name = format!("hostd-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let child = Command::new("systemd-nspawn")
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .arg("-D")
            .arg(rootfs)
            .args(["-b", "-M", &name, "--register=no", "--keep-unit", &network, "--console=pipe", "--volatile=overlay"])
            .arg(format!("--bind={}:/run/dbus", bus.path().display()))
            // nspawn's seccomp filter blocks bpf(); allow it so systemd's IPAddressDeny= works as on a host.
            .args(["--system-call-filter=bpf", "--capability=CAP_BPF"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("systemd-nspawn (package systemd-container)");
        let mut c = Container { leader: 0, child, _bus: bus, _slot: slot };
        // Under load nspawn's first child can be a short-lived helper: find the leader again on
        // every poll until systemd inside answers.
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            c.leader = c.find_leader();
            if c.leader != 0 {
                let state = c.exec(&["systemctl", "is-system-running"]).stdout;
                if matches!(state.trim(), "running" | "degraded") {
                    break;
                }
            }
            if let Ok(Some(status)) = c.child.try_wait() {
                panic!("systemd-nspawn exited during boot: {status}");
            }
            assert!(Instant::now() < deadline, "container did not reach running within 240 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn find_leader(&self) -> u32 {
        let children = std::fs::read_dir(format!("/proc/{}/task", self.child.id()))
            .map(|tasks| {
                tasks
                    .flatten()
                    .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
                    .collect::<String>()
            })
            .unwrap_or_default();
        children.split_whitespace().next().and_then(|p| p.parse().ok()).unwrap_or(0)
    }

    /// A path inside the container, seen from the host.
    pub fn path(&self, p: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{p}", self.leader))
    }

    pub fn write(&self, p: &str, content: &str) {
        let path = self.path(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    pub fn read(&self, p: &str) -> Vec<u8> {
        std::fs::read(self.path(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    /// Copy a host file to `dest` inside (atomically, as a real deploy would).
    pub fn install(&self, from: &str, dest: &str) {
        let tmp = self.path(&format!("{dest}.new"));
        std::fs::create_dir_all(tmp.parent().unwrap()).unwrap();
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, self.path(dest)).unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.leader.to_string(), "-a", "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]);
        cmd.args(args);
        cmd
    }

    pub fn exec(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().unwrap())
    }

    /// Start a command inside without waiting.
    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Child {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.leader.to_string(), "-a", "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]);
        for (k, v) in env {
            cmd.arg(format!("{k}={v}"));
        }
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    /// `agentkeys-hostd reconcile --no-acme --json ARGS…` inside the container.
    pub fn reconcile(&self, args: &[&str]) -> Run {
        let mut all = vec!["/usr/bin/agentkeys-hostd", "reconcile", "--no-acme", "--json"];
        all.extend_from_slice(args);
        self.exec(&all)
    }

    /// `agentkeys-hostd reconcile --json ARGS…` with certificates (no `--no-acme`).
    pub fn reconcile_acme(&self, args: &[&str]) -> Run {
        let mut all = vec!["/usr/bin/agentkeys-hostd", "reconcile", "--json"];
        all.extend_from_slice(args);
        self.exec(&all)
    }

    /// The one-shot secrets' values (master secret and the three worker KEKs), 64 hex each.
    pub fn env_secrets(&self) -> Vec<String> {
        super::SECRET_ENV
            .iter()
            .map(|(file, key)| {
                let text = String::from_utf8(self.read(file)).unwrap();
                let value = text.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap().to_owned();
                assert_eq!(value.len(), 64, "{file}: {key}");
                value
            })
            .collect()
    }

    /// Ship the optional services' stand-ins too (`agentkeys-standin install --all`), as a
    /// release that carries every binary of the catalog.
    pub fn ship_all_binaries(&self) {
        self.install_standins(&standin(), true);
    }

    /// `standin install [--all] /usr/local/bin` inside: the required services' binaries, or all.
    fn install_standins(&self, standin: &Path, all: bool) {
        let mut cmd = Command::new(standin);
        cmd.arg("install");
        if all {
            cmd.arg("--all");
        }
        let out = cmd.arg(self.path("/usr/local/bin")).output().unwrap();
        assert!(out.status.success(), "{} install (all: {all}): {out:?}", standin.display());
    }

    /// unit → MainPID of every managed unit.
    pub fn main_pids(&self) -> std::collections::BTreeMap<String, String> {
        self.main_pids_of(&super::units())
    }

    /// unit → "ActiveState MainPID" of each of `units`.
    pub fn main_pids_of(&self, units: &[&str]) -> std::collections::BTreeMap<String, String> {
        let units: Vec<String> = units.iter().map(|u| format!("{u}.service")).collect();
        let mut args = vec!["systemctl", "show", "-p", "Id,MainPID,ActiveState"];
        args.extend(units.iter().map(String::as_str));
        let out = self.exec(&args).stdout;
        let mut map = std::collections::BTreeMap::new();
        for block in out.split("\n\n") {
            let get =
                |k: &str| block.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).unwrap_or_default().to_owned();
            if !get("Id").is_empty() {
                map.insert(get("Id"), format!("{} {}", get("ActiveState"), get("MainPID")));
            }
        }
        map
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
