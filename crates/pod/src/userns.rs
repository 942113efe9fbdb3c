//! `pod create --userns`: the user namespace a rootless pod's containers share. `keep-id`
//! maps the caller's ids as themselves (see `peapod_runtime::userns`); `host` is the default.

use anyhow::anyhow;
use oci_spec::runtime::Spec;
use peapod_runtime::flags::rootless_ids;
use peapod_runtime::userns::UserNs;
use peapod_runtime::{Error as RuntimeError, Runtime};

use crate::lifecycle::{pods, record_of};
use crate::record::PodRecord;
use crate::store::PodStore;

/// Whether a pod made with `--userns mode` keeps the caller's ids; root is refused keep-id,
/// as `run --userns keep-id` is.
pub(crate) fn keep_id(rt: &Runtime, mode: Option<UserNs>) -> Result<bool, RuntimeError> {
    match (mode, rt.rootless) {
        (Some(UserNs::KeepId), false) => Err(RuntimeError::usage(anyhow!(
            "--userns keep-id is for rootless pods (as podman's): as root a pod has no user \
             namespace"
        ))),
        (Some(UserNs::KeepId), true) => Ok(true),
        (None | Some(UserNs::Host), _) => Ok(false),
    }
}

/// The user namespace mode of pod `name`'s containers: `Some(KeepId)` for a keep-id pod.
pub fn user_namespace(rt: &Runtime, name: &str) -> Result<Option<UserNs>, RuntimeError> {
    let entry = pods(rt)?.load(&PodStore::parse_name(name)?)?;
    Ok(record_of(&entry)?.keep_id.then_some(UserNs::KeepId))
}

/// The spec the infra process of `record`'s pod starts from: a rootless pod's has a user
/// namespace of the default maps, or keep-id's, where the infra process runs as the caller
/// (root inside may be unmapped there, without ranges).
pub(crate) fn infra_base_spec(record: &PodRecord) -> Spec {
    if !record.keep_id {
        return peapod_container::default_spec(record.rootless.then(rootless_ids));
    }
    let (uid, gid) = rootless_ids();
    let mut spec =
        peapod_container::spec_with_maps(Some(peapod_ns::RootlessMaps::keep_id(uid, gid)));
    if let Some(process) = spec.process_mut() {
        let mut user = process.user().clone();
        user.set_uid(uid);
        user.set_gid(gid);
        process.set_user(user);
    }
    spec
}
