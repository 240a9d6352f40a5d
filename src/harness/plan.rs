//! The plan: every case instance of the fixtures joined to its registered body, with the needs
//! of both, checked before anything runs.

use std::collections::HashMap;

use super::cli::Options;
use super::SetupError;
use crate::fixtures::{self, CaseInstance};
use crate::model::profile::Profile;
use crate::suites::{self, Body, Need};

pub struct Plan {
    pub instances: Vec<CaseInstance>,
    /// The body of each instance, same order.
    pub bodies: Vec<Body>,
    /// Fixture files used, with digests, for run.json.
    pub fixtures: Vec<crate::fixtures::FixtureDigest>,
}

impl Plan {
    pub fn new(options: &Options, profile: &fixtures::Loaded<Profile>) -> Result<Plan, SetupError> {
        let root = super::fixtures_root(options);
        let cases = fixtures::load_cases(&root)?;
        let mut instances = cases.value.instances(&profile.value)?;
        if let Some(reps) = options.reps {
            for i in &mut instances {
                i.repeat.reps = reps;
            }
        }
        let registry: HashMap<&str, Body> = suites::registry()
            .into_iter()
            .map(|b| (b.name, b))
            .collect();

        let mut bodies = Vec::with_capacity(instances.len());
        for i in &instances {
            let body = registry.get(i.body.as_str()).ok_or_else(|| {
                let mut known: Vec<&str> = registry.keys().copied().collect();
                known.sort();
                let line =
                    fixtures::case_line(&root, &i.case).map_or(String::new(), |l| format!(":{l}"));
                SetupError::Plan(format!(
                    "{}{line}: case `{}` names body `{}`, which no suite registers (known: {})",
                    cases.path.display(),
                    i.case,
                    i.body,
                    known.join(", ")
                ))
            })?;
            check_params(&root, &cases.value, i, body, profile.value.vram_bytes)?;
            bodies.push(*body);
        }
        let unused: Vec<&str> = registry
            .keys()
            .filter(|b| !instances.iter().any(|i| i.body == **b))
            .copied()
            .collect();
        if !unused.is_empty() {
            return Err(SetupError::Plan(format!(
                "{}: no case runs the bodies {}",
                cases.path.display(),
                unused.join(", ")
            )));
        }
        Ok(Plan {
            instances,
            bodies,
            fixtures: vec![profile.digest(), cases.digest()],
        })
    }
}

/// `instance`'s `with:` against what `body` declares, for its size and the profile's VRAM:
/// refused at its place in the matrix before anything runs.
fn check_params(
    root: &std::path::Path,
    matrix: &fixtures::CaseMatrix,
    instance: &fixtures::CaseInstance,
    body: &Body,
    vram_bytes: u64,
) -> Result<(), SetupError> {
    let shape = suites::Shape {
        bytes: instance.size,
        vram_bytes,
    };
    crate::fixtures::params::check_all(body.params, &instance.params, instance.size)
        .and_then(|()| body.fit.map_or(Ok(()), |fit| fit(&instance.params, shape)))
        .map_err(|(key, message)| {
            fixtures::param_error(
                root,
                matrix,
                &instance.case,
                &key,
                format!(
                    "{message}; in case `{}` (instance `{}`, body `{}`)",
                    instance.case, instance.name, body.name
                ),
            )
            .into()
        })
}

impl Plan {
    /// Keeps the instances (and their bodies) for which `keep` holds.
    pub fn keep(&mut self, keep: impl Fn(&CaseInstance) -> bool) {
        let (instances, bodies) = std::mem::take(&mut self.instances)
            .into_iter()
            .zip(std::mem::take(&mut self.bodies))
            .filter(|(i, _)| keep(i))
            .unzip();
        self.instances = instances;
        self.bodies = bodies;
    }

    /// The runner's own test cases (`--runner-selftest`), in place of the suite.
    pub fn selftest() -> Plan {
        let (instances, bodies) = super::selftest::plan().into_iter().unzip();
        Plan {
            instances,
            bodies,
            fixtures: Vec::new(),
        }
    }
}

/// The needs of a body and of its instance's fixtures.
pub fn needs<'a>(body: Body, instance: &'a CaseInstance) -> impl Iterator<Item = Need> + 'a {
    body.needs
        .iter()
        .copied()
        .chain(instance.needs.iter().copied())
}
