//! amdgpu's module parameters, every one, for run.json: two runs that disagree are first
//! compared on these, since `noretry` alone decides whether a GPU fault can migrate at all.
//!
//! `/sys/module/amdgpu/parameters/NAME` holds each parameter's value as its `param_get_*`
//! writes it (`"%d\n"`, `"%u\n"`, `"Y\n"`/`"N\n"`, strings); parameters with mode 0600 (for
//! example `vramlimit`) are root only, and a run as another user records them as unreadable
//! rather than leaving them out, so the absence of a value is never mistaken for a default.
//!
//! The parameters that matter to this suite are [`NOTABLE`]. The series (amdgpu SVM on
//! drm_gpusvm, and its VRAM migration v1 to v5 on amd-gfx) adds none: its chunk sizes (2M, 64K,
//! 4K) are constants in amdgpu_svm.c. `svm_default_granularity` is mainline KFD's; it was
//! first posted as `svm_attr_gobm`.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::util::text::io_reason;

/// amdgpu's parameters, under the sysfs root.
pub const AMDGPU_PARAMETERS: &str = "module/amdgpu/parameters";

/// One parameter as read.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamValue {
    /// The file's text without its trailing newline.
    Value(String),
    /// Why it could not be read (`permission denied` for 0600 parameters as a user).
    Unreadable(String),
}

impl ParamValue {
    pub fn value(&self) -> Option<&str> {
        match self {
            ParamValue::Value(v) => Some(v),
            ParamValue::Unreadable(_) => None,
        }
    }
}

/// Every amdgpu parameter, by name, sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ModuleParams {
    pub params: BTreeMap<String, ParamValue>,
}

/// A parameter this suite's results depend on, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notable {
    pub name: &'static str,
    pub why: &'static str,
}

/// The parameters a reader of a run needs first (amdgpu_drv.c).
pub const NOTABLE: [Notable; 5] = [
    Notable {
        name: "noretry",
        why: "-1 auto, 0 retry faults on, 1 off; with retry off there is no XNACK and no \
              fault-driven migration (gfx906 needs amdgpu.noretry=0)",
    },
    Notable {
        name: "svm_default_granularity",
        why: "KFD SVM migration granularity, log2 of pages (default 9 = 2 MiB)",
    },
    Notable {
        name: "gpu_recovery",
        why: "-1 auto, 0 off, 1 on: whether a GPU reset recovers, for the reset cases",
    },
    Notable {
        name: "reset_method",
        why: "which reset amdgpu_gpu_recover performs (-1 auto)",
    },
    Notable {
        name: "vramlimit",
        why: "VRAM limited to this many MiB for testing (0 = all): moves where eviction starts",
    },
];

#[derive(Debug, thiserror::Error)]
pub enum ModParamsError {
    #[error("cannot list amdgpu's parameters in `{}`: {}; is amdgpu loaded?", path.display(), io_reason(source))]
    List { path: PathBuf, source: io::Error },
}

/// Reads every file of `SYS_ROOT/module/amdgpu/parameters`. Only an unreadable folder is an
/// error; an unreadable parameter is recorded as such.
pub fn read_module_params(sys_root: &Path) -> Result<ModuleParams, ModParamsError> {
    let dir = sys_root.join(AMDGPU_PARAMETERS);
    let list_error = |source| ModParamsError::List {
        path: dir.clone(),
        source,
    };
    let mut params = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).map_err(list_error)? {
        let entry = entry.map_err(list_error)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let value = match std::fs::read(entry.path()) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                ParamValue::Value(text.strip_suffix('\n').unwrap_or(&text).to_string())
            }
            Err(e) => ParamValue::Unreadable(io_reason(&e)),
        };
        params.insert(name, value);
    }
    Ok(ModuleParams { params })
}

impl ModuleParams {
    /// A parameter's value, `None` when absent or unreadable.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name)?.value()
    }

    /// Each notable parameter with what was read of it (`None`: this amdgpu has no such
    /// parameter).
    pub fn notable(&self) -> Vec<(Notable, Option<&ParamValue>)> {
        NOTABLE
            .iter()
            .map(|n| (*n, self.params.get(n.name)))
            .collect()
    }

    /// `noretry` as a number: -1, 0 or 1; `None` when absent, unreadable or not a number.
    pub fn noretry(&self) -> Option<i32> {
        self.get("noretry")?.trim().parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::super::sysfs::testtree::write;
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tree(root: &Path) -> PathBuf {
        let dir = root.join(AMDGPU_PARAMETERS);
        write(&dir.join("noretry"), "0\n");
        write(&dir.join("svm_default_granularity"), "9\n");
        write(&dir.join("gpu_recovery"), "-1\n");
        write(&dir.join("lockup_timeout"), "\n");
        write(&dir.join("dc"), "-1\n");
        write(&dir.join("ras_enable"), "Y\n");
        write(&dir.join("virtual_display"), "0000:26:00.0,1");
        dir
    }

    #[test]
    fn every_parameter_is_read_and_sorted() {
        let t = tempfile::tempdir().unwrap();
        tree(t.path());
        let p = read_module_params(t.path()).unwrap();
        let names: Vec<&str> = p.params.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "dc",
                "gpu_recovery",
                "lockup_timeout",
                "noretry",
                "ras_enable",
                "svm_default_granularity",
                "virtual_display"
            ]
        );
        assert_eq!(p.get("noretry"), Some("0"));
        assert_eq!(p.get("lockup_timeout"), Some(""));
        assert_eq!(p.get("virtual_display"), Some("0000:26:00.0,1"));
        assert_eq!(p.get("ras_enable"), Some("Y"));
        assert_eq!(p.noretry(), Some(0));
    }

    #[test]
    fn notable_parameters_say_which_are_missing() {
        let t = tempfile::tempdir().unwrap();
        tree(t.path());
        let p = read_module_params(t.path()).unwrap();
        let got: Vec<(&str, Option<&str>)> = p
            .notable()
            .into_iter()
            .map(|(n, v)| (n.name, v.and_then(ParamValue::value)))
            .collect();
        assert_eq!(
            got,
            [
                ("noretry", Some("0")),
                ("svm_default_granularity", Some("9")),
                ("gpu_recovery", Some("-1")),
                ("reset_method", None),
                ("vramlimit", None),
            ]
        );
    }

    #[test]
    fn an_unreadable_parameter_is_recorded_as_such() {
        let t = tempfile::tempdir().unwrap();
        let dir = tree(t.path());
        // A folder where a file should be fails to read for root too (mode 0600 does not).
        std::fs::create_dir(dir.join("vramlimit")).unwrap();
        let p = read_module_params(t.path()).unwrap();
        assert_eq!(
            p.params.get("vramlimit"),
            Some(&ParamValue::Unreadable("is a directory".into()))
        );
        assert_eq!(p.get("vramlimit"), None);
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["params"]["vramlimit"]["unreadable"], "is a directory");
        assert_eq!(json["params"]["noretry"]["value"], "0");
    }

    #[test]
    fn a_0600_parameter_as_a_user_is_unreadable() {
        let t = tempfile::tempdir().unwrap();
        let dir = tree(t.path());
        let f = dir.join("vramlimit");
        write(&f, "0\n");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o000)).unwrap();
        let p = read_module_params(t.path()).unwrap();
        // Root reads it anyway; a user gets permission denied. Either way it is listed.
        match p.params.get("vramlimit").unwrap() {
            ParamValue::Value(v) => assert_eq!(v, "0"),
            ParamValue::Unreadable(why) => assert_eq!(why, "permission denied"),
        }
    }

    #[test]
    fn noretry_that_is_not_a_number_is_none() {
        let t = tempfile::tempdir().unwrap();
        let dir = tree(t.path());
        write(&dir.join("noretry"), "auto\n");
        assert_eq!(read_module_params(t.path()).unwrap().noretry(), None);
    }

    #[test]
    fn without_amdgpu_the_error_names_the_folder() {
        let t = tempfile::tempdir().unwrap();
        let e = read_module_params(t.path()).unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.contains(
                "module/amdgpu/parameters`: no such file or directory; is amdgpu loaded?"
            ),
            "{shown}"
        );
    }
}
