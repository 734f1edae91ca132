//! The job being converted: the model value filled keyword by keyword, with what the checks
//! after the last keyword need to know.

use super::needs::JobRefs;
use crate::model::{Job, Retry, When};
use crate::span::Span;

pub(crate) struct JobDraft {
    pub job: Job,
    pub refs: JobRefs,
    /// `allow_failure:` is written (a manual job's default does not apply then).
    pub allow_failure_set: bool,
    /// Where `start_in:` is written, for the `when: delayed` check.
    pub start_in_span: Option<Span>,
    /// A script that is there but wrong is reported as such, not also as missing.
    pub script_invalid: bool,
    /// `stage:` was written but is no stage name (already reported).
    pub stage_invalid: bool,
}

impl JobDraft {
    pub fn new(name: &str, span: &Span) -> Self {
        Self {
            job: Job {
                name: name.to_string(),
                span: span.clone(),
                stage: "test".to_string(),
                image: None,
                before_script: Vec::new(),
                script: Vec::new(),
                after_script: Vec::new(),
                variables: Vec::new(),
                cache: Vec::new(),
                artifacts: None,
                when: When::OnSuccess,
                allow_failure: false,
                needs: None,
                dependencies: None,
                unsupported: Vec::new(),
                services: Vec::new(),
                rules: Vec::new(),
                only: None,
                except: None,
                allow_failure_exit_codes: Vec::new(),
                start_in: None,
                retry: Retry::default(),
                timeout: None,
                interruptible: false,
                tags: Vec::new(),
                coverage: None,
                environment: None,
                environment_url: None,
                resource_group: None,
                parallel: None,
                trigger: None,
                inherit_variables: None,
            },
            refs: JobRefs::default(),
            allow_failure_set: false,
            start_in_span: None,
            script_invalid: false,
            stage_invalid: false,
        }
    }
}
