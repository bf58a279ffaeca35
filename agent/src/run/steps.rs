//! The effectful steps of a run: prepare (observe + decide), converge (files → jobs → health),
//! rollback, and the certificate step with its re-plan, nginx reload and served-serial proof.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Host;
use crate::decide::acme_policy::CertState;
use crate::decide::plan::NGINX;
use crate::decide::plan::Plan;
use crate::decide::run as decide;
use crate::decide::state::Pending;
use crate::host::acme_store::AcmeStore;
use crate::host::health::Verdict;
use crate::host::releases;
use crate::host::state::{self, State};
use crate::host::systemd::Manager;
use crate::host::tls::HostOutcome;
use crate::run::prepare::{self, Prepared, Request};
use crate::{host::apply, host::execute, host::failpoints, host::observe};

/// A converge that failed part-way: what it did, the health verdicts it got, and why.
pub(super) struct Failed {
    pub done: Vec<String>,
    pub verdicts: Vec<Verdict>,
    pub error: anyhow::Error,
}

impl Failed {
    fn new(done: Vec<String>, verdicts: Vec<Verdict>, error: anyhow::Error) -> Self {
        Self { done, verdicts, error }
    }
}

/// What every step of one run works with.
pub(super) struct Ctx<'a, 'h, M: Manager> {
    pub host: &'a Host<'h, M>,
    /// The connected manager (`None`: files only).
    pub manager: Option<&'a M>,
    pub req: &'a Request,
    pub saved: &'a State,
}

impl<M: Manager> Ctx<'_, '_, M> {
    /// Observe (systemd too, when driven) and plan.
    pub fn prepare(&self) -> anyhow::Result<Prepared> {
        let Host { root, accounts, rt, .. } = *self.host;
        match self.manager {
            Some(sd) => {
                let probe = |settings: &crate::decide::settings::Settings| {
                    rt.block_on(prepare::observe_runtime(sd, root, settings, self.saved))
                };
                prepare::prepare(root, accounts, self.req, Some(&probe))
            }
            None => prepare::prepare(root, accounts, self.req, None),
        }
    }

    /// Files, then systemd jobs, then the health gate.
    pub fn converge(&self, p: &Prepared) -> Result<(Vec<String>, Vec<Verdict>), Failed> {
        let Host { root, accounts, rt, .. } = *self.host;
        let mut done = apply::apply(root, accounts, &p.plan, &p.observed)
            .map_err(|e| Failed::new(Vec::new(), Vec::new(), e))?
            .done;
        failpoints::hit("after-files");
        let Some(sd) = self.manager else {
            return Ok((done, Vec::new()));
        };
        let users = match accounts.lookup(&observe::ACCOUNTS.0, &observe::ACCOUNTS.1) {
            Ok(u) => u,
            Err(e) => return Err(Failed::new(done, Vec::new(), e)),
        };
        match rt.block_on(execute::run(sd, root, &p.settings, &users, &p.plan)) {
            Ok(mut more) => done.append(&mut more),
            Err(e) => return Err(Failed::new(done, Vec::new(), e)),
        }
        failpoints::hit("before-health");
        let services: Vec<&crate::decide::catalog::Service> = p.settings.services().collect();
        let verdicts = (self.host.health)(&services);
        failpoints::hit("after-health");
        if let Some(bad) = verdicts.iter().find(|v| !v.ok) {
            let state = rt.block_on(sd.unit_state(&bad.unit)).ok();
            let e =
                execute::unit_failure(&bad.unit, &format!("failed its health check: {}", bad.detail), state.as_ref());
            return Err(Failed::new(done, verdicts, e));
        }
        Ok((done, verdicts))
    }

    /// Observe and plan again after the host changed under the plan (a certificate installed, a
    /// release switched back), then converge.
    fn reconverge(&self) -> anyhow::Result<(Vec<String>, Plan)> {
        let again = self.prepare()?;
        self.converge(&again).map(|(done, _)| (done, again.plan)).map_err(|f| f.error)
    }

    /// Switch back to `previous` and converge again (only the services whose binary changed restart).
    pub fn rollback(&self, previous: &str) -> anyhow::Result<Vec<String>> {
        releases::switch(self.host.root, previous)?;
        let (mut done, _) = self.reconverge()?;
        done.insert(0, format!("rollback: switched back to release {previous}"));
        Ok(done)
    }

    /// The certificate step, then — if any certificate was installed — the vhosts flip to HTTPS
    /// through the same plan/apply path (files, `nginx -t`, reload), and each new certificate is
    /// proven served.
    /// `nginx_marked` is set once the state file says nginx must be reloaded (before the first
    /// certificate is installed), so a run killed before the reload is finished by the next.
    pub fn certificates(
        &self,
        p: &Prepared,
        nginx_marked: &std::cell::Cell<bool>,
        unpaused: &[String],
    ) -> anyhow::Result<(BTreeMap<String, HostOutcome>, Vec<String>)> {
        let Host { root, accounts, rt, clock, .. } = *self.host;
        let Some(sd) = self.manager else {
            return Ok((BTreeMap::new(), Vec::new()));
        };
        let now = clock.now_unix();
        // The ledger and ARI cache: read once, written once (also when the step fails part-way:
        // a failure recorded before it must hold back the next run's order).
        let mut store = AcmeStore::load(root)?;
        let mut mark = || {
            if !nginx_marked.get() {
                let mut saved = state::read(root)?;
                let pending = saved.pending.get_or_insert_with(|| Pending {
                    started_unix: u64::try_from(now).unwrap_or_default(),
                    pid: std::process::id(),
                    restarts: Vec::new(),
                });
                pending.restarts = decide::pending_restarts(&pending.restarts, &[NGINX.to_owned()]);
                state::write(root, &saved)?;
                nginx_marked.set(true);
            }
            Ok(())
        };
        let result = rt.block_on(crate::host::tls::converge(
            root,
            &p.settings,
            &p.facts.tls,
            &mut store,
            now,
            unpaused,
            &mut mark,
        ));
        store.save(root)?;
        let (outcomes, installed) = result?;
        let mut done = Vec::new();
        if !installed {
            return Ok((outcomes, done));
        }
        let (more, plan) = self.reconverge()?;
        done = more;
        let renewed: Vec<String> =
            outcomes.iter().filter(|(_, o)| o.state == CertState::Issued).map(|(h, _)| h.clone()).collect();
        if let Some(reload) = crate::decide::plan::reload_for_certificates(&plan, &renewed) {
            // The vhosts point at each host's `current` link: a renewal changes no nginx file, so
            // nginx must still be told, or it keeps serving the old certificate (spec §12).
            let users = accounts.lookup(&observe::ACCOUNTS.0, &observe::ACCOUNTS.1)?;
            let only = Plan { actions: vec![reload.clone()] };
            done.extend(rt.block_on(execute::run(sd, root, &p.settings, &users, &only))?);
        }
        for (host, o) in outcomes.iter().filter(|(_, o)| o.state == CertState::Issued) {
            let path = root.path(&format!("{}/{host}/current/fullchain.pem", crate::decide::paths::TLS_STORE));
            let leaf = crate::host::certs::read_leaf(&path)?.leaf_der;
            crate::host::tls_proof::prove(443, host, &leaf, Duration::from_secs(10))?;
            done.push(format!(
                "prove {host} serves serial {} on 127.0.0.1:443",
                o.serial.as_deref().unwrap_or_default()
            ));
        }
        Ok((outcomes, done))
    }
}
