//! A job's log on its way to GitLab (gitlab-runner `network/trace.go`): the job writes into a
//! [`TraceBuffer`]; while it runs, what is new goes out in `PATCH` requests of at most 1 MiB at
//! the interval GitLab asks for, and GitLab's `Job-Status` in the answers can cancel the job;
//! at the end, the rest goes out and the final `PUT` carries the log's checksum and size
//! (retried while GitLab answers 202).

use super::client::{
    PatchResult, RemoteJobStatus, RunnerClient, RunnerError, TraceOutput, UpdateResult,
};
use super::spec::{JobOutcome, JobPayload, JobState};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The most one `PATCH` carries (gitlab-runner `DefaultTracePatchLimit`).
pub const PATCH_LIMIT: usize = 1024 * 1024;
/// Until GitLab says otherwise (gitlab-runner `DefaultUpdateInterval`).
pub const DEFAULT_UPDATE_INTERVAL: Duration = Duration::from_secs(3);
/// With nothing new to send, the job is still "touched" (`PUT state=running`) this often at
/// least, so GitLab does not take it for stuck (gitlab-runner: `max(30 s, 4 × interval)`).
const MIN_TOUCH_INTERVAL: Duration = Duration::from_secs(30);
/// 416 answers in a row before a flush gives up until the next tick.
const MAX_RANGE_RETRIES: usize = 5;
/// Final updates GitLab may answer 202 to before the runner gives up on the job.
const MAX_FINAL_UPDATES: usize = 100;

/// The most of a job's log GitLab gets (gitlab-runner's `output_limit` default, 4096 KiB).
pub const DEFAULT_OUTPUT_LIMIT: usize = 4 * 1024 * 1024;

/// Everything the job has written, in order (the console of its run), up to the output limit;
/// past it, gitlab-runner's notice and nothing more (the job goes on).
#[derive(Clone)]
pub struct TraceBuffer {
    log: Arc<Mutex<Vec<u8>>>,
    limit: usize,
}

impl Default for TraceBuffer {
    fn default() -> Self {
        TraceBuffer::with_limit(DEFAULT_OUTPUT_LIMIT)
    }
}

impl TraceBuffer {
    pub fn with_limit(limit: usize) -> TraceBuffer {
        TraceBuffer {
            log: Arc::default(),
            limit,
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contents(&self) -> Vec<u8> {
        self.lock().clone()
    }

    /// At most `max` bytes from `start`.
    fn slice(&self, start: usize, max: usize) -> Vec<u8> {
        let log = self.lock();
        let start = start.min(log.len());
        log[start..log.len().min(start + max)].to_vec()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::io::Write for TraceBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut log = self.lock();
        let room = self.limit.saturating_sub(log.len());
        if room == 0 {
            // Already full, notice written: the rest is dropped.
            return Ok(bytes.len());
        }
        if bytes.len() < room {
            log.extend_from_slice(bytes);
        } else {
            log.extend_from_slice(&bytes[..room]);
            log.extend_from_slice(
                format!(
                    "\n\x1b[31;1mJob's log exceeded limit of {} bytes.\nJob execution will continue but no more output will be collected.\x1b[0;m\n",
                    self.limit
                )
                .as_bytes(),
            );
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends one job's trace.
pub struct TraceSender<'a> {
    client: &'a RunnerClient,
    job: &'a JobPayload,
    buffer: TraceBuffer,
    /// Bytes GitLab holds.
    sent: usize,
    interval: Duration,
    last_contact: Instant,
}

impl<'a> TraceSender<'a> {
    pub fn new(client: &'a RunnerClient, job: &'a JobPayload, buffer: TraceBuffer) -> Self {
        TraceSender {
            client,
            job,
            buffer,
            sent: 0,
            interval: DEFAULT_UPDATE_INTERVAL,
            last_contact: Instant::now(),
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Send what GitLab does not hold yet, 1 MiB at a time; GitLab's view of the job.
    pub async fn flush(&mut self) -> Result<RemoteJobStatus, RunnerError> {
        let mut mismatches = 0;
        let mut status = RemoteJobStatus::Running;
        while self.sent < self.buffer.len() {
            let chunk = self.buffer.slice(self.sent, PATCH_LIMIT);
            let answer = self.client.patch_trace(self.job, self.sent, &chunk).await?;
            self.last_contact = Instant::now();
            if let Some(interval) = answer.interval {
                self.interval = interval;
            }
            status = answer.job_status;
            match answer.result {
                PatchResult::Accepted => self.sent += chunk.len(),
                PatchResult::RangeMismatch { offset } => {
                    mismatches += 1;
                    self.sent = offset.min(self.buffer.len());
                    if mismatches >= MAX_RANGE_RETRIES {
                        break;
                    }
                }
                PatchResult::Rejected => return Ok(RemoteJobStatus::Aborted),
            }
            if status.stops_the_job() {
                break;
            }
        }
        Ok(status)
    }

    /// Two-phase job commit: wharf advertises `two_phase_job_commit`, so GitLab hands the job
    /// over `pending` and waits for the runner to take it with `PUT state=running` (GitLab
    /// `doc/development/cicd/two_phase_job_commit.md`; gitlab-runner `commands/single.go`). A
    /// job GitLab no longer gives (403/404) is not run; an unanswered acknowledgement is a
    /// warning (GitLab then refuses the trace and the job is stopped).
    pub async fn acknowledge(
        &mut self,
        warn: &(dyn Fn(&RunnerError) + Sync),
    ) -> Result<(), RunnerError> {
        let running = JobOutcome {
            state: JobState::Running,
            failure_reason: None,
            exit_code: None,
        };
        self.last_contact = Instant::now();
        match self.client.update_job(self.job, &running, None).await {
            Ok(UpdateResult::Rejected) => Err(RunnerError::JobGone { id: self.job.id }),
            Ok(_) => Ok(()),
            Err(e) => {
                warn(&e);
                Ok(())
            }
        }
    }

    /// A tick while the job runs: new output goes out; with none for a while, the job is
    /// touched instead.
    async fn tick(&mut self) -> Result<RemoteJobStatus, RunnerError> {
        if self.sent < self.buffer.len() {
            return self.flush().await;
        }
        let touch_every = MIN_TOUCH_INTERVAL.max(self.interval * 4);
        if self.last_contact.elapsed() < touch_every {
            return Ok(RemoteJobStatus::Running);
        }
        self.last_contact = Instant::now();
        self.client.touch_job(self.job).await
    }

    /// The final update: the rest of the log, then the job's state with the log's checksum,
    /// again at the interval while GitLab answers 202, or does not answer (the job's result
    /// must not be lost to one failed request); the last error when GitLab never took it.
    pub async fn finish(&mut self, outcome: &JobOutcome) -> Result<(), RunnerError> {
        let mut last_error = None;
        for _ in 0..MAX_FINAL_UPDATES {
            match self.final_update(outcome).await {
                Ok(Some(interval)) => {
                    if let Some(interval) = interval {
                        self.interval = interval;
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => last_error = Some(e),
            }
            tokio::time::sleep(self.interval).await;
        }
        last_error.map_or(Ok(()), Err)
    }

    /// One try: `None` when done, `Some(interval)` to try again.
    async fn final_update(
        &mut self,
        outcome: &JobOutcome,
    ) -> Result<Option<Option<Duration>>, RunnerError> {
        if self.flush().await? == RemoteJobStatus::Aborted {
            return Ok(None);
        }
        let output = TraceOutput::of(&self.buffer.contents());
        Ok(
            match self
                .client
                .update_job(self.job, outcome, Some(output))
                .await?
            {
                UpdateResult::Accepted | UpdateResult::Rejected => None,
                UpdateResult::TryAgain { interval } => Some(interval),
            },
        )
    }
}

/// Run `job` (which writes into `buffer` and stops when `cancel` turns `true`) while its trace
/// goes to GitLab; GitLab canceling the job sets `cancel`. Sending errors are reported to
/// `warn` and retried at the next tick: the job goes on.
pub async fn run_with_trace<F>(
    client: &RunnerClient,
    payload: &JobPayload,
    buffer: TraceBuffer,
    cancel: &watch::Sender<bool>,
    job: F,
    warn: &(dyn Fn(&RunnerError) + Sync),
) -> Result<JobOutcome, RunnerError>
where
    F: Future<Output = JobOutcome>,
{
    let mut sender = TraceSender::new(client, payload, buffer);
    sender.acknowledge(warn).await?;
    let mut job = std::pin::pin!(job);
    let outcome = loop {
        tokio::select! {
            outcome = &mut job => break outcome,
            _ = tokio::time::sleep(sender.interval()) => {
                match sender.tick().await {
                    Ok(status) if status.stops_the_job() => {
                        let _ = cancel.send(true);
                    }
                    Ok(_) => {}
                    Err(e) => warn(&e),
                }
            }
        }
    };
    sender.finish(&outcome).await?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn output_past_the_limit_is_dropped_after_gitlab_runners_notice() {
        let mut buffer = TraceBuffer::with_limit(10);
        buffer.write_all(b"12345678").unwrap();
        buffer.write_all(b"abcdef").unwrap();
        buffer.write_all(b"zzz").unwrap();
        let log = String::from_utf8(buffer.contents()).unwrap();
        assert!(log.starts_with("12345678ab\n"), "{log}");
        assert!(
            log.contains("Job's log exceeded limit of 10 bytes."),
            "{log}"
        );
        assert!(!log.contains("cdef") && !log.contains("zzz"), "{log}");
        assert_eq!(log.matches("exceeded").count(), 1);
    }
}
