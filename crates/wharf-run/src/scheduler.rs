//! The pipeline's scheduling state machine, without processes or clocks: which job may start,
//! which is skipped and why, following GitLab's pipeline processing.
//!
//! GitLab decides per job from the *composite status* of its prerequisites (the jobs it `needs`,
//! or, without `needs`, every job of the earlier stages) and its `when`:
//! - `on_success`, `manual`, `delayed`: run when the composite is `success`; stage-ordered jobs
//!   also run when it is `skipped` (a skipped earlier job does not stop a stage), while a DAG job
//!   (`needs`) whose needed job did not run is skipped too.
//! - `on_failure`: run when the composite is `failed`.
//! - `always`: run unless the pipeline is blocked.
//!
//! A failure with `allow_failure` counts as success. A manual job that was not played counts
//! as skipped for the jobs that `need` it; for stage ordering it is ignored when it may fail
//! (`allow_failure: true`, the default for manual jobs) and blocks later stages otherwise.

use std::time::Duration;
use wharf_ci::When;

/// One job as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    /// Position of the job's stage in the pipeline's stage list.
    pub stage: usize,
    /// Indices of the jobs it needs; `None` = every job of the earlier stages.
    pub needs: Option<Vec<usize>>,
    pub when: When,
    pub allow_failure: bool,
    pub resource_group: Option<String>,
    pub start_in: Option<Duration>,
    /// A manual job the user asked to run (`wharf run JOB`, `--manual JOB`).
    pub play: bool,
    /// Trigger jobs wait for a child pipeline whose jobs take the slots: they take none.
    pub takes_slot: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Start(usize),
    Skip(usize, String),
    /// `when: delayed`: call [`Scheduler::delay_elapsed`] after this long.
    Delay(usize, Duration),
}

/// How a job that ran ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Failed, but `allow_failure` lets the pipeline go on.
    AllowedFailure,
    Failed,
    Canceled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Delaying,
    /// Its prerequisites allow it to run; waiting for a slot or its resource group.
    Ready,
    Running,
    Done(Done),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    Ran(Outcome),
    Skipped,
    /// A manual job nobody played.
    ManualNotPlayed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Composite {
    Success,
    Failed,
    Skipped,
    /// A manual job that may not fail was not played: the pipeline waits for it.
    Blocked(usize),
}

pub struct Scheduler {
    nodes: Vec<Node>,
    state: Vec<State>,
    limit: usize,
    canceled: bool,
}

impl Scheduler {
    /// `limit`: how many jobs may run at once (at least 1).
    pub fn new(nodes: Vec<Node>, limit: usize) -> Self {
        let state = vec![State::Pending; nodes.len()];
        Self {
            nodes,
            state,
            limit: limit.max(1),
            canceled: false,
        }
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// Every decision that can be taken now. Call again after each event.
    pub fn next_actions(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        // Decisions can cascade (a skip settles a dependant), so loop until nothing changes.
        loop {
            let mut changed = false;
            for i in 0..self.nodes.len() {
                if self.state[i] != State::Pending {
                    continue;
                }
                // `Some(None)`: decided (now ready to start) with nothing to report yet.
                if let Some(action) = self.decide(i) {
                    changed = true;
                    actions.extend(action);
                }
            }
            if !changed {
                break;
            }
        }
        // Start ready jobs in pipeline order while there is room.
        for i in 0..self.nodes.len() {
            if self.state[i] != State::Ready {
                continue;
            }
            let node = &self.nodes[i];
            if node.takes_slot && self.running_slots() >= self.limit {
                continue;
            }
            if let Some(group) = &node.resource_group {
                let busy = (0..self.nodes.len()).any(|j| {
                    self.state[j] == State::Running
                        && self.nodes[j].resource_group.as_ref() == Some(group)
                });
                if busy {
                    continue;
                }
            }
            self.state[i] = State::Running;
            actions.push(Action::Start(i));
        }
        // Nothing runs, waits or can start, yet jobs are pending: they wait on each other (a
        // `needs` cycle the loader did not catch). Skip them rather than wait forever.
        let stuck = !self
            .state
            .iter()
            .any(|s| matches!(s, State::Running | State::Delaying | State::Ready));
        if actions.is_empty() && stuck {
            for i in 0..self.nodes.len() {
                if self.state[i] == State::Pending {
                    self.state[i] = State::Done(Done::Skipped);
                    actions.push(Action::Skip(
                        i,
                        "its needs wait on each other (a cycle)".into(),
                    ));
                }
            }
        }
        actions
    }

    /// `None` while `i`'s prerequisites are unfinished; else the decision's action, if any.
    fn decide(&mut self, i: usize) -> Option<Option<Action>> {
        let composite = self.prerequisites(i)?;
        let node = &self.nodes[i];
        let dag = node.needs.is_some();
        let skip = |why: String| (State::Done(Done::Skipped), Some(Action::Skip(i, why)));
        let not_run_reason = |c: Composite| match (c, dag) {
            (Composite::Failed, true) => "a needed job failed".to_string(),
            (Composite::Failed, false) => "an earlier stage failed".to_string(),
            (Composite::Skipped, _) => "a needed job did not run".to_string(),
            (Composite::Blocked(m), _) => format!(
                "blocked by the manual job `{}` (run it with --manual)",
                self.nodes[m].name
            ),
            (Composite::Success, _) => "when: on_failure and nothing failed".to_string(),
        };
        let runnable = |c: Composite| match c {
            Composite::Success => true,
            Composite::Skipped => !dag,
            _ => false,
        };
        let (state, action) = match node.when {
            When::Never => skip("when: never".into()),
            When::OnFailure if composite == Composite::Failed => (State::Ready, None),
            When::OnFailure => skip(match composite {
                Composite::Blocked(_) => not_run_reason(composite),
                _ => "when: on_failure and nothing failed".into(),
            }),
            When::Always => match composite {
                Composite::Blocked(_) => skip(not_run_reason(composite)),
                _ => (State::Ready, None),
            },
            _ if !runnable(composite) => skip(not_run_reason(composite)),
            When::Manual if !node.play => (
                State::Done(Done::ManualNotPlayed),
                Some(Action::Skip(
                    i,
                    format!(
                        "manual job: run it with `wharf run --manual {}`",
                        shell_word(&node.name)
                    ),
                )),
            ),
            When::Delayed => {
                let wait = node.start_in.unwrap_or_default();
                (State::Delaying, Some(Action::Delay(i, wait)))
            }
            _ => (State::Ready, None),
        };
        self.state[i] = state;
        Some(action)
    }

    /// The composite status of `i`'s prerequisites, or `None` while one of them is unfinished.
    fn prerequisites(&self, i: usize) -> Option<Composite> {
        let node = &self.nodes[i];
        let prereqs: Vec<usize> = match &node.needs {
            Some(needs) => needs.clone(),
            None => (0..self.nodes.len())
                .filter(|&j| self.nodes[j].stage < node.stage)
                .collect(),
        };
        let dag = node.needs.is_some();
        let mut any_failed = false;
        let mut any_skipped = false;
        let mut all_skipped = true;
        let mut blocked = None;
        for j in prereqs {
            let State::Done(done) = self.state[j] else {
                return None;
            };
            match done {
                Done::Ran(Outcome::Success | Outcome::AllowedFailure) => all_skipped = false,
                Done::Ran(Outcome::Failed | Outcome::Canceled) => {
                    any_failed = true;
                    all_skipped = false;
                }
                Done::Skipped => any_skipped = true,
                Done::ManualNotPlayed if dag || self.nodes[j].allow_failure => any_skipped = true,
                Done::ManualNotPlayed => {
                    blocked.get_or_insert(j);
                    all_skipped = false;
                }
            }
        }
        // GitLab: for `needs`, one need that did not run makes the whole "skipped".
        Some(if any_skipped && (dag || all_skipped) {
            Composite::Skipped
        } else if let Some(m) = blocked {
            Composite::Blocked(m)
        } else if any_failed {
            Composite::Failed
        } else {
            Composite::Success
        })
    }

    /// The job `i` (started earlier) ended.
    pub fn finished(&mut self, i: usize, outcome: Outcome) {
        self.state[i] = State::Done(Done::Ran(outcome));
    }

    /// The wait of a `when: delayed` job is over.
    pub fn delay_elapsed(&mut self, i: usize) {
        if self.state[i] == State::Delaying {
            self.state[i] = State::Ready;
        }
    }

    /// Ctrl-C: nothing new starts; every job not started yet is skipped.
    pub fn cancel(&mut self) -> Vec<Action> {
        self.canceled = true;
        let mut actions = Vec::new();
        for i in 0..self.nodes.len() {
            if matches!(
                self.state[i],
                State::Pending | State::Delaying | State::Ready
            ) {
                self.state[i] = State::Done(Done::Skipped);
                actions.push(Action::Skip(i, "pipeline canceled".into()));
            }
        }
        actions
    }

    pub fn is_canceled(&self) -> bool {
        self.canceled
    }

    /// Every job has been decided and every started job has finished.
    pub fn is_finished(&self) -> bool {
        self.state.iter().all(|s| matches!(s, State::Done(_)))
    }

    pub fn running(&self) -> usize {
        self.state.iter().filter(|s| **s == State::Running).count()
    }

    fn running_slots(&self) -> usize {
        (0..self.nodes.len())
            .filter(|&i| self.state[i] == State::Running && self.nodes[i].takes_slot)
            .count()
    }
}

/// Quote a job name for a command line when it has spaces or special characters.
fn shell_word(name: &str) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:".contains(c))
    {
        name.to_string()
    } else {
        format!("'{}'", name.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, stage: usize) -> Node {
        Node {
            name: name.into(),
            stage,
            needs: None,
            when: When::OnSuccess,
            allow_failure: false,
            resource_group: None,
            start_in: None,
            play: false,
            takes_slot: true,
        }
    }

    fn needs(mut n: Node, on: &[usize]) -> Node {
        n.needs = Some(on.to_vec());
        n
    }

    fn when(mut n: Node, w: When) -> Node {
        n.when = w;
        n
    }

    fn starts(actions: &[Action]) -> Vec<usize> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Start(i) => Some(*i),
                _ => None,
            })
            .collect()
    }

    fn skips(actions: &[Action]) -> Vec<usize> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Skip(i, _) => Some(*i),
                _ => None,
            })
            .collect()
    }

    /// Runs every started job to the outcome `result` gives, in start order, and returns the
    /// start order and the skipped jobs.
    fn drive(s: &mut Scheduler, result: impl Fn(usize) -> Outcome) -> (Vec<usize>, Vec<usize>) {
        let mut started = Vec::new();
        let mut skipped = Vec::new();
        let mut queue = std::collections::VecDeque::new();
        loop {
            let actions = s.next_actions();
            skipped.extend(skips(&actions));
            for i in starts(&actions) {
                started.push(i);
                queue.push_back(i);
            }
            for a in &actions {
                if let Action::Delay(i, _) = a {
                    s.delay_elapsed(*i);
                }
            }
            match queue.pop_front() {
                Some(i) => s.finished(i, result(i)),
                None if actions.is_empty() => break,
                None => {}
            }
        }
        assert!(s.is_finished());
        (started, skipped)
    }

    #[test]
    fn needs_start_a_job_before_its_stage_is_done() {
        // 0 a (build), 1 slow (build), 2 b (test, needs a)
        let mut s = Scheduler::new(
            vec![job("a", 0), job("slow", 0), needs(job("b", 1), &[0])],
            4,
        );
        assert_eq!(starts(&s.next_actions()), vec![0, 1]);
        s.finished(0, Outcome::Success);
        // slow still runs, b starts now.
        assert_eq!(starts(&s.next_actions()), vec![2]);
        assert_eq!(s.running(), 2);
    }

    #[test]
    fn empty_needs_start_at_once_and_stages_wait() {
        let mut s = Scheduler::new(
            vec![job("a", 0), needs(job("late", 2), &[]), job("t", 1)],
            4,
        );
        assert_eq!(starts(&s.next_actions()), vec![0, 1]);
        s.finished(1, Outcome::Success);
        assert!(starts(&s.next_actions()).is_empty());
        s.finished(0, Outcome::Success);
        assert_eq!(starts(&s.next_actions()), vec![2]);
    }

    #[test]
    fn concurrency_limit_is_respected() {
        let mut s = Scheduler::new((0..5).map(|i| job(&format!("j{i}"), 0)).collect(), 2);
        assert_eq!(starts(&s.next_actions()), vec![0, 1]);
        assert!(starts(&s.next_actions()).is_empty());
        s.finished(1, Outcome::Success);
        assert_eq!(starts(&s.next_actions()), vec![2]);
        s.finished(0, Outcome::Success);
        s.finished(2, Outcome::Success);
        let (started, _) = drive(&mut s, |_| Outcome::Success);
        assert_eq!(started, vec![3, 4]);
    }

    #[test]
    fn failed_need_skips_dependants_transitively_but_not_others() {
        // a fails; b needs a; c needs b; d is in a later stage (stage ordering); e needs nothing.
        let nodes = vec![
            job("a", 0),
            needs(job("b", 1), &[0]),
            needs(job("c", 2), &[1]),
            job("d", 1),
            needs(job("e", 1), &[]),
        ];
        let mut s = Scheduler::new(nodes, 4);
        let (started, skipped) = drive(&mut s, |i| {
            if i == 0 {
                Outcome::Failed
            } else {
                Outcome::Success
            }
        });
        assert_eq!(started, vec![0, 4]);
        assert_eq!(skipped, vec![1, 2, 3]);
    }

    #[test]
    fn allowed_failure_counts_as_success() {
        let mut s = Scheduler::new(vec![job("a", 0), needs(job("b", 1), &[0]), job("c", 1)], 4);
        let (started, skipped) = drive(&mut s, |i| {
            if i == 0 {
                Outcome::AllowedFailure
            } else {
                Outcome::Success
            }
        });
        assert_eq!(started, vec![0, 1, 2]);
        assert!(skipped.is_empty());
    }

    #[test]
    fn on_failure_and_always() {
        let nodes = vec![
            job("a", 0),
            when(job("cleanup", 1), When::OnFailure),
            when(job("report", 1), When::Always),
            job("next", 1),
        ];
        let mut s = Scheduler::new(nodes.clone(), 4);
        let (started, skipped) = drive(&mut s, |i| {
            if i == 0 {
                Outcome::Failed
            } else {
                Outcome::Success
            }
        });
        assert_eq!(started, vec![0, 1, 2]);
        assert_eq!(skipped, vec![3]);
        let mut s = Scheduler::new(nodes, 4);
        let (started, skipped) = drive(&mut s, |_| Outcome::Success);
        assert_eq!(started, vec![0, 2, 3]);
        assert_eq!(skipped, vec![1]);
    }

    #[test]
    fn skipped_earlier_stage_does_not_stop_stage_jobs_but_stops_dag_jobs() {
        // `only_on_failure` is skipped (nothing failed): `t` (stage order) still runs, `n`
        // (needs it) is skipped as GitLab does.
        let nodes = vec![
            when(job("only_on_failure", 0), When::OnFailure),
            job("t", 1),
            needs(job("n", 1), &[0]),
        ];
        let mut s = Scheduler::new(nodes, 4);
        let (started, skipped) = drive(&mut s, |_| Outcome::Success);
        assert_eq!(started, vec![1]);
        assert_eq!(skipped, vec![0, 2]);
    }

    #[test]
    fn manual_jobs_wait_for_play_and_block_as_gitlab_does() {
        let mut manual = when(job("deploy", 0), When::Manual);
        manual.allow_failure = true;
        let mut s = Scheduler::new(
            vec![
                manual.clone(),
                job("after", 1),
                needs(job("smoke", 1), &[0]),
            ],
            4,
        );
        let (started, skipped) = drive(&mut s, |_| Outcome::Success);
        // Not played: `after` (stage order) runs, `smoke` (needs it) does not.
        assert_eq!(started, vec![1]);
        assert_eq!(skipped, vec![0, 2]);

        manual.allow_failure = false;
        let mut s = Scheduler::new(vec![manual.clone(), job("after", 1)], 4);
        let actions = s.next_actions();
        assert!(actions.iter().any(|a| matches!(a, Action::Skip(1, why) if why.contains("blocked by the manual job `deploy`"))), "{actions:?}");

        manual.play = true;
        let mut s = Scheduler::new(vec![manual, job("after", 1)], 4);
        let (started, _) = drive(&mut s, |_| Outcome::Success);
        assert_eq!(started, vec![0, 1]);
    }

    #[test]
    fn delayed_jobs_wait_then_start() {
        let mut d = when(job("later", 0), When::Delayed);
        d.start_in = Some(Duration::from_secs(30));
        let mut s = Scheduler::new(vec![d, job("next", 1)], 4);
        assert_eq!(
            s.next_actions(),
            vec![Action::Delay(0, Duration::from_secs(30))]
        );
        assert!(s.next_actions().is_empty());
        s.delay_elapsed(0);
        assert_eq!(s.next_actions(), vec![Action::Start(0)]);
        s.finished(0, Outcome::Success);
        assert_eq!(s.next_actions(), vec![Action::Start(1)]);
    }

    #[test]
    fn resource_group_members_never_run_at_once() {
        let grouped = |name: &str| {
            let mut n = job(name, 0);
            n.resource_group = Some("prod".into());
            n
        };
        let mut s = Scheduler::new(vec![grouped("x"), grouped("y"), job("free", 0)], 4);
        assert_eq!(starts(&s.next_actions()), vec![0, 2]);
        assert!(starts(&s.next_actions()).is_empty());
        s.finished(0, Outcome::Success);
        assert_eq!(starts(&s.next_actions()), vec![1]);
    }

    #[test]
    fn trigger_jobs_take_no_slot() {
        let mut t = job("child", 0);
        t.takes_slot = false;
        let mut s = Scheduler::new(vec![t, job("a", 0), job("b", 0)], 1);
        assert_eq!(starts(&s.next_actions()), vec![0, 1]);
    }

    #[test]
    fn cancel_skips_everything_not_started() {
        let mut s = Scheduler::new(vec![job("a", 0), job("b", 1), job("c", 1)], 4);
        assert_eq!(starts(&s.next_actions()), vec![0]);
        assert_eq!(skips(&s.cancel()), vec![1, 2]);
        assert!(!s.is_finished());
        s.finished(0, Outcome::Canceled);
        assert!(s.next_actions().is_empty());
        assert!(s.is_finished() && s.is_canceled());
    }

    #[test]
    fn a_needs_cycle_is_skipped_instead_of_waiting_forever() {
        let mut s = Scheduler::new(
            vec![
                needs(job("x", 0), &[1]),
                needs(job("y", 0), &[0]),
                job("z", 0),
            ],
            4,
        );
        let (started, skipped) = drive(&mut s, |_| Outcome::Success);
        assert_eq!(started, vec![2]);
        assert_eq!(skipped, vec![0, 1]);
    }

    #[test]
    fn dag_skip_wins_over_failure_as_in_gitlab() {
        // GitLab's composite status for `needs`: any skipped need makes it "skipped", so an
        // on_failure job needing a failed and a skipped job does not run.
        let nodes = vec![
            job("a", 0),
            when(job("never_ran", 0), When::OnFailure),
            when(needs(job("rescue", 1), &[0, 1]), When::OnFailure),
        ];
        let mut s = Scheduler::new(nodes, 4);
        let (started, skipped) = drive(&mut s, |_| Outcome::Failed);
        assert_eq!(started, vec![0]);
        assert_eq!(skipped, vec![1, 2]);
    }
}
