//! The keywords layer: converters from resolved YAML trees to the typed model, one module per
//! keyword family, and the [`table`] that declares every GitLab keyword once (name, where it is
//! allowed, its converter). Uses `read`, `yaml` and the basics; never `load`.

mod artifacts;
mod draft;
mod image;
mod inherit;
mod job;
mod needs;
mod parallel;
mod recorded;
mod rules;
mod settings;
mod table;
mod trigger;
mod variables;
mod variables_file;

pub(crate) use inherit::inherit;
pub(crate) use job::job;
pub(crate) use needs::{JobRefs, repeated_needs};
pub(crate) use parallel::{Spec, instance_name};
pub(crate) use rules::workflow;
pub(crate) use table::{
    default_keywords, is_default_keyword, is_top_level, legacy_default_keywords, top_level,
};
pub(crate) use trigger::{bridge_takes, check_trigger_job, is_bridge};
pub(crate) use variables::{Scope as VariableScope, variables};
pub(crate) use variables_file::parse as variables_file;
