//! The child's side of `--isolate process`: started by the runner as `NAME --exact
//! --child-verdict FILE`, it runs the one case and writes its record to FILE (child.rs is the
//! runner's side).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use super::executor::Runner;
use super::plan::Plan;
use super::{cli, Invocation, SetupError};
use crate::device::backend::Backend;
use crate::results;

/// A case's child process (after stage open): runs the one case here and writes its record for the runner.
pub(super) fn run_case(
    invocation: &Invocation,
    opened: &Arc<dyn Backend>,
    plan: Plan,
    verdict: &Path,
) -> Result<ExitCode, SetupError> {
    let Invocation {
        options, libtest, ..
    } = invocation;
    // The runner waits for this process; if the runner dies, this case must not go on alone
    // with the GPU.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let wanted = libtest.filter.as_deref().unwrap_or("");
    let Some((instance, body)) = plan
        .instances
        .into_iter()
        .zip(plan.bodies)
        .find(|(i, _)| i.name == wanted)
    else {
        return Err(SetupError::Plan(format!(
            "--child-verdict: no case is named `{wanted}`"
        )));
    };
    let runner = Runner::new(options, Arc::clone(opened), cli::Isolation::None);
    let base = runner.blank_record(&instance, 0);
    let record = runner.attempt_here(&instance, body, &base);
    println!("svmconf: {} {}", record.case, record.status);
    let bytes = serde_json::to_vec(&record)
        .map_err(|e| SetupError::Plan(format!("--child-verdict: cannot encode the record: {e}")))?;
    // No sync: the runner reads it as soon as this process exits, and if the machine dies
    // first the case is incomplete whatever this file holds.
    std::fs::write(verdict, &bytes).map_err(|source| results::ResultsError::Write {
        path: verdict.to_path_buf(),
        source,
    })?;
    Ok(ExitCode::SUCCESS)
}
