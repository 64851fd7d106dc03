//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas exactly one writes.
//!
//! - A replica takes the Lease when it does not exist, is free (no holder), already names this replica
//!   (a restart of the same pod), or has not been renewed for its `leaseDurationSeconds`.
//! - Every write is a replace at the resourceVersion just read, so two candidates cannot both win.
//! - The leader renews every `duration / 3`. If it has not renewed for `2/3` of the duration it gives up
//!   ([`Leadership::hold`] returns) before anyone else may take over, so two leaders never overlap.
//! - A standby polls (at most every 2 s) and wakes right when the holder's claim lapses.
//! - [`Leadership::release`] clears the holder on shutdown, so a standby takes over at its next poll.

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api,
    api::{PostParams, ResourceExt},
};
use std::time::Duration;
use tokio::time::Instant;

/// Which Lease, who we are, and how long a claim holds.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub name: String,
    /// The holder identity written into the Lease (the pod name, or `hostname-pid`).
    pub holder: String,
    pub duration: Duration,
}

impl LeaseSettings {
    /// How often the leader renews.
    pub fn renew_interval(&self) -> Duration {
        self.duration / 3
    }

    /// How long the leader may go without a successful renewal before it must stop writing.
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    /// How often a standby looks at the Lease.
    pub fn retry_interval(&self) -> Duration {
        (self.duration / 4).clamp(Duration::from_millis(100), Duration::from_secs(2))
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }
}

/// What a candidate does about the Lease it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// There is no Lease: create it, holding it.
    Create,
    /// Take it (free, expired, or already ours).
    Take,
    /// Someone else holds it until `until`.
    Wait { holder: String, until: Timestamp },
}

/// Decides from the Lease's spec (absent: no Lease) who may hold it at `now`.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else {
        return Decision::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() || holder == me {
        return Decision::Take;
    }
    let Some(MicroTime(renewed)) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return Decision::Take;
    };
    let duration =
        SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0).max(0)));
    let until = renewed.checked_add(duration).unwrap_or(*renewed);
    if now >= until {
        Decision::Take
    } else {
        Decision::Wait {
            holder: holder.to_string(),
            until,
        }
    }
}

/// The spec to write when taking or renewing the Lease.
fn claimed(previous: Option<&LeaseSpec>, settings: &LeaseSettings, now: Timestamp) -> LeaseSpec {
    let previous = previous.cloned().unwrap_or_default();
    let ours = previous.holder_identity.as_deref() == Some(settings.holder.as_str());
    LeaseSpec {
        holder_identity: Some(settings.holder.clone()),
        lease_duration_seconds: Some(settings.duration_seconds()),
        acquire_time: if ours {
            previous.acquire_time.clone()
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(
            previous.lease_transitions.unwrap_or(0)
                + i32::from(!ours && previous.holder_identity.is_some()),
        ),
        ..previous
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(crate::context::FIELD_MANAGER.to_string()),
        ..PostParams::default()
    }
}

/// Waits until this replica holds the Lease. Calls `on_contact` after every successful read of the Lease
/// (the API server is reachable: the replica is ready, as leader or standby). API errors are logged and
/// retried; this returns only when the Lease is held.
pub async fn acquire(
    api: &Api<Lease>,
    settings: &LeaseSettings,
    on_contact: impl Fn(),
) -> Leadership {
    let mut last_holder = None::<String>;
    loop {
        match try_acquire(api, settings, &mut last_holder).await {
            Ok(Some(lease)) => {
                on_contact();
                tracing::info!(lease = %settings.name, holder = %settings.holder, "acquired the leader Lease");
                return Leadership {
                    api: api.clone(),
                    settings: settings.clone(),
                    lease,
                    last_renewal: Instant::now(),
                };
            }
            Ok(None) => on_contact(),
            Err(wait) => tokio::time::sleep(wait).await,
        }
    }
}

/// One attempt: `Ok(Some)` when taken, `Ok(None)` after waiting for the holder, `Err(wait)` after an error.
async fn try_acquire(
    api: &Api<Lease>,
    settings: &LeaseSettings,
    last_holder: &mut Option<String>,
) -> Result<Option<Lease>, Duration> {
    let retry = settings.retry_interval();
    let current = api.get_opt(&settings.name).await.map_err(|error| {
        tracing::warn!(lease = %settings.name, %error, "cannot read the leader Lease; retrying");
        retry
    })?;
    let now = Timestamp::now();
    // A Lease without a spec is a free Lease.
    let spec = current.as_ref().map(|l| l.spec.clone().unwrap_or_default());
    let written = match decide(spec.as_ref(), &settings.holder, now) {
        Decision::Create => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(settings.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(claimed(None, settings, now)),
            };
            api.create(&post_params(), &lease).await
        }
        Decision::Take => {
            let mut lease = current.unwrap_or_default();
            lease.spec = Some(claimed(lease.spec.as_ref(), settings, now));
            api.replace(&settings.name, &post_params(), &lease).await
        }
        Decision::Wait { holder, until } => {
            if last_holder.as_deref() != Some(holder.as_str()) {
                tracing::info!(lease = %settings.name, %holder, "standing by: another replica leads");
                *last_holder = Some(holder);
            }
            // Wake just after the claim lapses, or at the next poll if that is sooner.
            let lapse = Duration::try_from(until.duration_since(now)).unwrap_or_default()
                + Duration::from_millis(50);
            tokio::time::sleep(lapse.min(retry)).await;
            return Ok(None);
        }
    };
    match written {
        Ok(lease) => Ok(Some(lease)),
        // Someone else wrote first (409 on replace, 409 AlreadyExists on create): read again soon.
        Err(kube::Error::Api(status)) if status.is_conflict() || status.is_already_exists() => {
            Err(Duration::from_millis(50))
        }
        Err(error) => {
            tracing::warn!(lease = %settings.name, %error, "cannot take the leader Lease; retrying");
            Err(retry)
        }
    }
}

/// Why leadership ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Lost {
    #[error("another replica ({0}) took the Lease")]
    TakenBy(String),
    #[error("the Lease could not be renewed within {0:?}: {1}")]
    NotRenewed(Duration, String),
}

/// A held Lease.
pub struct Leadership {
    api: Api<Lease>,
    settings: LeaseSettings,
    lease: Lease,
    last_renewal: Instant,
}

impl Leadership {
    /// Renews the Lease until it is lost, then returns why. The caller must stop writing at once.
    pub async fn hold(&mut self) -> Lost {
        let mut wait = self.settings.renew_interval();
        loop {
            tokio::time::sleep(wait).await;
            let deadline = self.last_renewal + self.settings.renew_deadline();
            let attempt = tokio::time::timeout_at(deadline, self.renew()).await;
            match attempt {
                Ok(Ok(())) => wait = self.settings.renew_interval(),
                Ok(Err(RenewError::Taken(holder))) => return Lost::TakenBy(holder),
                Ok(Err(RenewError::Api(error))) => {
                    if Instant::now() >= deadline {
                        return Lost::NotRenewed(self.settings.renew_deadline(), error);
                    }
                    tracing::warn!(lease = %self.settings.name, %error, "cannot renew the leader Lease; retrying");
                    wait = self.settings.retry_interval();
                }
                Err(_elapsed) => {
                    return Lost::NotRenewed(
                        self.settings.renew_deadline(),
                        "the API server did not answer".into(),
                    );
                }
            }
        }
    }

    async fn renew(&mut self) -> Result<(), RenewError> {
        let now = Timestamp::now();
        let mut lease = self.lease.clone();
        lease.spec = Some(claimed(lease.spec.as_ref(), &self.settings, now));
        match self
            .api
            .replace(&self.settings.name, &post_params(), &lease)
            .await
        {
            Ok(written) => {
                self.lease = written;
                self.last_renewal = Instant::now();
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.is_conflict() || status.is_not_found() => {
                // Changed or deleted behind our back: still ours only if it still names us.
                let current = self
                    .api
                    .get_opt(&self.settings.name)
                    .await
                    .map_err(|e| RenewError::Api(e.to_string()))?;
                let holder = current
                    .as_ref()
                    .and_then(|l| l.spec.as_ref())
                    .and_then(|s| s.holder_identity.clone())
                    .unwrap_or_default();
                match current {
                    Some(current) if holder == self.settings.holder => {
                        self.lease = current;
                        Err(RenewError::Api("the Lease changed; renewing again".into()))
                    }
                    _ => Err(RenewError::Taken(if holder.is_empty() {
                        "nobody".into()
                    } else {
                        holder
                    })),
                }
            }
            Err(error) => Err(RenewError::Api(error.to_string())),
        }
    }

    /// Gives the Lease up (clears the holder) so a standby takes over without waiting for it to lapse.
    pub async fn release(self) {
        let mut lease = self.lease;
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.renew_time = None;
            spec.acquire_time = None;
        }
        let name = lease.name_any();
        let params = post_params();
        let release = self.api.replace(&name, &params, &lease);
        match tokio::time::timeout(Duration::from_secs(5), release).await {
            Ok(Ok(_)) => tracing::info!(lease = %name, "released the leader Lease"),
            Ok(Err(error)) => {
                tracing::warn!(lease = %name, %error, "cannot release the leader Lease; it lapses on its own")
            }
            Err(_) => {
                tracing::warn!(lease = %name, "releasing the leader Lease timed out; it lapses on its own")
            }
        }
    }
}

enum RenewError {
    Taken(String),
    Api(String),
}

/// This replica's name in the Lease: the pod name when given, else `hostname-pid`.
pub fn holder_identity(pod_name: Option<&str>) -> String {
    match pod_name.filter(|n| !n.is_empty()) {
        Some(name) => name.to_string(),
        None => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "weft-operator".to_string());
            format!("{host}-{}", std::process::id())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("in range")
    }

    fn held_by(holder: &str, renewed: i64, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(at(renewed))),
            acquire_time: Some(MicroTime(at(renewed - 100))),
            lease_duration_seconds: Some(duration),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn no_lease_is_created() {
        assert_eq!(decide(None, "a", at(1000)), Decision::Create);
    }

    #[test]
    fn a_live_claim_of_another_is_waited_for_until_it_lapses() {
        let spec = held_by("b", 1000, 15);
        assert_eq!(
            decide(Some(&spec), "a", at(1010)),
            Decision::Wait {
                holder: "b".into(),
                until: at(1015)
            }
        );
        assert_eq!(decide(Some(&spec), "a", at(1015)), Decision::Take);
    }

    #[test]
    fn a_lease_without_spec_is_free() {
        assert_eq!(
            decide(Some(&LeaseSpec::default()), "a", at(1000)),
            Decision::Take
        );
    }

    #[test]
    fn a_free_or_own_lease_is_taken_at_once() {
        let mut released = held_by("b", 1000, 15);
        released.holder_identity = None;
        assert_eq!(decide(Some(&released), "a", at(1001)), Decision::Take);
        assert_eq!(
            decide(Some(&held_by("a", 1000, 15)), "a", at(1001)),
            Decision::Take
        );
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_does_not() {
        let settings = LeaseSettings {
            name: "weft-operator".into(),
            holder: "a".into(),
            duration: Duration::from_secs(15),
        };
        let taken = claimed(Some(&held_by("b", 1000, 15)), &settings, at(1020));
        assert_eq!(taken.holder_identity.as_deref(), Some("a"));
        assert_eq!(taken.lease_transitions, Some(4));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(1020))));
        let renewed = claimed(Some(&taken), &settings, at(1025));
        assert_eq!(renewed.lease_transitions, Some(4));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(1020))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(1025))));
        assert_eq!(renewed.lease_duration_seconds, Some(15));
    }

    #[test]
    fn the_leader_gives_up_before_a_standby_may_take_over() {
        let settings = LeaseSettings {
            name: "l".into(),
            holder: "a".into(),
            duration: Duration::from_secs(15),
        };
        assert_eq!(settings.renew_interval(), Duration::from_secs(5));
        assert!(settings.renew_deadline() < settings.duration);
        assert_eq!(settings.retry_interval(), Duration::from_secs(2));
    }

    #[test]
    fn holder_is_the_pod_name_or_host_and_pid() {
        assert_eq!(
            holder_identity(Some("weft-operator-abc")),
            "weft-operator-abc"
        );
        assert!(holder_identity(None).ends_with(&format!("-{}", std::process::id())));
    }
}
