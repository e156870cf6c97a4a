//! Rolling updates: which instances to start and stop next, given the desired replicas, the
//! update strategy and the instances there are. Pure; the embedded runtime calls it on every
//! reconcile, and it is what Kubernetes' Deployment controller does, so that an application
//! rolls out the same way on both.
//!
//! # Rules
//! - Never more than `replicas + max_surge` instances (not counting those stopping).
//! - Never fewer than `replicas - max_unavailable` ready instances because of a stop we chose:
//!   old ready instances are stopped only as new ones become ready.
//! - Not-ready old instances are stopped first: they serve nothing.
//! - Scaling without a new revision follows the same rules.

/// One instance as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance<Id> {
    pub id: Id,
    /// Of the desired revision.
    pub current: bool,
    pub ready: bool,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step<Id> {
    /// New instances of the desired revision to start.
    pub start: u32,
    /// Instances to stop, not-ready first.
    pub stop: Vec<Id>,
}

impl<Id> Step<Id> {
    pub fn is_empty(&self) -> bool {
        self.start == 0 && self.stop.is_empty()
    }
}

/// The resolved strategy: absolute numbers for this replica count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strategy {
    pub replicas: u32,
    pub max_surge: u32,
    pub max_unavailable: u32,
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Instances of the desired revision.
    pub updated: u32,
    /// Ready instances of the desired revision.
    pub updated_ready: u32,
    /// Ready instances of any revision.
    pub ready: u32,
    /// Instances of older revisions.
    pub old: u32,
}

impl Progress {
    pub fn of<Id>(instances: &[Instance<Id>]) -> Self {
        let count = |f: &dyn Fn(&Instance<Id>) -> bool| instances.iter().filter(|i| f(i)).count() as u32;
        Self {
            updated: count(&|i| i.current),
            updated_ready: count(&|i| i.current && i.ready),
            ready: count(&|i| i.ready),
            old: count(&|i| !i.current),
        }
    }

    /// Every instance is of the desired revision and ready, and there are exactly `replicas`.
    pub fn is_complete(&self, replicas: u32) -> bool {
        self.old == 0 && self.updated == replicas && self.updated_ready == replicas
    }
}

/// The next step of the rollout of `instances` towards `strategy` (the Deployment
/// controller's arithmetic: `maxScaledDown = all - minAvailable - newUnavailable`).
pub fn next_step<Id: Clone>(strategy: Strategy, instances: &[Instance<Id>]) -> Step<Id> {
    let Strategy { replicas, max_surge, max_unavailable } = strategy;
    let min_ready = replicas.saturating_sub(max_unavailable);
    let mut stop: Vec<Id> = Vec::new();

    // Scaled down: stop the surplus of the desired revision, not-ready first.
    let mut current: Vec<&Instance<Id>> = instances.iter().filter(|i| i.current).collect();
    current.sort_by_key(|i| i.ready);
    let surplus = current.len().saturating_sub(replicas as usize);
    stop.extend(current.drain(..surplus).map(|i| i.id.clone()));
    let new = current.len() as u32;
    let new_ready = current.iter().filter(|i| i.ready).count() as u32;

    let mut old: Vec<&Instance<Id>> = instances.iter().filter(|i| !i.current).collect();
    old.sort_by_key(|i| i.ready);
    let old_ready = old.iter().filter(|i| i.ready).count() as u32;
    let old_not_ready = old.len() as u32 - old_ready;

    // Start new instances within the surge budget.
    let all = new + old.len() as u32;
    let start = (replicas + max_surge).saturating_sub(all).min(replicas.saturating_sub(new));

    // Stop old instances without going below the availability floor: not-ready ones first.
    let new_unavailable = new - new_ready;
    let max_scaled_down = i64::from(all) - i64::from(min_ready) - i64::from(new_unavailable);
    if max_scaled_down > 0 {
        let unhealthy = (max_scaled_down as u32).min(old_not_ready);
        stop.extend(old[..unhealthy as usize].iter().map(|i| i.id.clone()));
        let all = all - unhealthy;
        let max_scaled_down = i64::from(all) - i64::from(min_ready) - i64::from(new_unavailable);
        let above_floor = i64::from(new_ready + old_ready) - i64::from(min_ready);
        let healthy = max_scaled_down.min(above_floor).clamp(0, i64::from(old_ready)) as usize;
        let first_ready = old_not_ready as usize;
        stop.extend(old[first_ready..first_ready + healthy].iter().map(|i| i.id.clone()));
    }
    Step { start, stop }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rollout simulated step by step: new instances become ready one step after they
    /// start (or never, when `new_becomes_ready` is false); stopped instances go at once.
    fn simulate(strategy: Strategy, old_ready: u32, new_becomes_ready: bool) -> (Vec<Instance<u32>>, u32) {
        let mut next_id = 0;
        let mut instances: Vec<Instance<u32>> = (0..old_ready)
            .map(|_| {
                next_id += 1;
                Instance { id: next_id, current: false, ready: true }
            })
            .collect();
        let min_ready = strategy.replicas.saturating_sub(strategy.max_unavailable).min(old_ready);
        for step_number in 1..=200 {
            let step = next_step(strategy, &instances);
            instances.retain(|i| !step.stop.contains(&i.id));
            let ready = instances.iter().filter(|i| i.ready).count() as u32;
            assert!(ready >= min_ready, "step {step_number}: {ready} ready, below {min_ready}: {instances:?}");
            for _ in 0..step.start {
                next_id += 1;
                instances.push(Instance { id: next_id, current: true, ready: false });
            }
            let limit = strategy.replicas + strategy.max_surge;
            assert!(instances.len() as u32 <= limit.max(old_ready), "step {step_number}: over {limit}: {instances:?}");
            if step.is_empty() {
                return (instances, step_number);
            }
            for instance in instances.iter_mut().filter(|i| i.current) {
                instance.ready = new_becomes_ready;
            }
        }
        panic!("no convergence: {instances:?}");
    }

    #[test]
    fn every_strategy_converges_within_its_bounds() {
        for replicas in 0..=7 {
            for max_surge in 0..=3 {
                for max_unavailable in 0..=3 {
                    if max_surge == 0 && max_unavailable == 0 {
                        continue;
                    }
                    for old in [0, replicas, replicas + 2] {
                        let strategy = Strategy { replicas, max_surge, max_unavailable };
                        let (instances, _) = simulate(strategy, old, true);
                        let progress = Progress::of(&instances);
                        assert!(progress.is_complete(replicas), "{strategy:?} from {old}: {instances:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_revision_that_never_becomes_ready_keeps_the_old_one_serving() {
        let strategy = Strategy { replicas: 4, max_surge: 1, max_unavailable: 1 };
        let (instances, _) = simulate(strategy, 4, false);
        let progress = Progress::of(&instances);
        assert_eq!(progress.ready, 3, "only max_unavailable old instances were given up: {instances:?}");
        assert_eq!(progress.old, 3);
        assert!(!progress.is_complete(4));
    }

    #[test]
    fn surge_only_replaces_one_at_a_time() {
        let strategy = Strategy { replicas: 3, max_surge: 1, max_unavailable: 0 };
        let old: Vec<Instance<u32>> = (1..=3).map(|id| Instance { id, current: false, ready: true }).collect();
        assert_eq!(next_step(strategy, &old), Step { start: 1, stop: vec![] });
        let mut with_new = old.clone();
        with_new.push(Instance { id: 4, current: true, ready: false });
        assert_eq!(next_step(strategy, &with_new), Step { start: 0, stop: vec![] }, "waits for readiness");
        with_new[3].ready = true;
        assert_eq!(next_step(strategy, &with_new).stop.len(), 1);
    }

    #[test]
    fn not_ready_old_instances_go_first() {
        let strategy = Strategy { replicas: 2, max_surge: 1, max_unavailable: 0 };
        let instances = vec![
            Instance { id: 1, current: false, ready: true },
            Instance { id: 2, current: false, ready: false },
            Instance { id: 3, current: true, ready: true },
        ];
        assert_eq!(next_step(strategy, &instances).stop, vec![2]);
    }

    #[test]
    fn scaling_down_stops_not_ready_instances_first() {
        let strategy = Strategy { replicas: 1, max_surge: 1, max_unavailable: 0 };
        let instances = vec![
            Instance { id: 1, current: true, ready: true },
            Instance { id: 2, current: true, ready: false },
            Instance { id: 3, current: true, ready: true },
        ];
        let step = next_step(strategy, &instances);
        assert_eq!(step.start, 0);
        assert_eq!(step.stop.len(), 2);
        assert!(step.stop.contains(&2));
    }
}
