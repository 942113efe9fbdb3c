//! OCI bundles of the test rootfs: the `config.json` `peapod spec` writes, changed by the test
//! as a JSON value (so a test can also write what the OCI types would refuse).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{finish, Outcome, TestRootfs};

impl TestRootfs {
    /// The bundle `NAME` in the test's scratch directory: `peapod spec`'s `config.json`, its
    /// `root.path` this test's rootfs, changed by `edit`.
    pub fn spec_bundle(&self, name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
        self.spec_bundle_with(name, &[], edit)
    }

    /// [`TestRootfs::spec_bundle`] from `peapod spec SPEC_ARGS` (`--rootless`).
    pub fn spec_bundle_with(
        &self,
        name: &str,
        spec_args: &[&str],
        edit: impl FnOnce(&mut Value),
    ) -> PathBuf {
        let dir = self.scratch().join(name);
        std::fs::create_dir_all(&dir).expect("bundle directory");
        let mut spec = self.peapod();
        spec.arg("spec").args(spec_args).arg("--bundle").arg(&dir);
        let out = finish(spec.spawn().expect("spawn peapod spec"));
        assert_eq!(out.code, 0, "peapod spec: {out:?}");
        edit_config(&dir, |spec| {
            spec["root"]["path"] = self.arg().into();
            edit(spec);
        });
        dir
    }

    /// `peapod run --bundle BUNDLE ID`, finished.
    pub fn run_bundle(&self, bundle: &Path, id: &str) -> Outcome {
        let mut run = self.peapod();
        run.args(["run", "--bundle"]).arg(bundle).arg(id);
        finish(run.spawn().expect("spawn peapod run"))
    }
}

/// Rewrites the `config.json` of `bundle` as `edit` changes it.
pub fn edit_config(bundle: &Path, edit: impl FnOnce(&mut Value)) {
    let path = bundle.join("config.json");
    let text = std::fs::read_to_string(&path).expect("read config.json");
    let mut spec: Value = serde_json::from_str(&text).expect("config.json is JSON");
    edit(&mut spec);
    let text = serde_json::to_string_pretty(&spec).expect("JSON");
    std::fs::write(&path, text).expect("write config.json");
}

/// Makes the spec's process `args`, without a terminal (`peapod spec` writes runc's
/// interactive `sh`).
pub fn set_command(spec: &mut Value, args: &[&str]) {
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = args.into();
}

/// Adds a bind mount of the host's `source` at `destination` to the spec's `mounts`.
pub fn add_bind(spec: &mut Value, source: &Path, destination: &str) {
    let mounts = spec["mounts"].as_array_mut().expect("mounts");
    mounts.push(serde_json::json!({
        "destination": destination,
        "type": "bind",
        "source": source,
        "options": ["rbind"],
    }));
}
