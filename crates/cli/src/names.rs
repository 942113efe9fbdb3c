//! The name of a docker-style container (`run` of an image or a root directory): `--name`,
//! which is its id, checked against the generated names; or, without it, a generated
//! `adjective_surname` beside its 64-hex id (see `peapod_runtime::names`).

use anyhow::anyhow;
use oci_spec::runtime::Spec;
use peapod_runtime::names::{NameLock, NAME_ANNOTATION};
use peapod_runtime::{Error, Runtime};
use peapod_state::ContainerId;

/// Names container `id` about to be made from `spec`: a generated id gets a generated name
/// (in its annotations), with the lock to hold until it is recorded; a name given is
/// refused when a container already has it as its generated name.
pub(crate) fn name_container(
    rt: &Runtime,
    spec: &mut Spec,
    id: &str,
) -> Result<Option<NameLock>, Error> {
    let generated = id.parse::<ContainerId>().is_ok_and(|c| c.is_generated());
    if !generated {
        if let Some(other) = peapod_runtime::names::find(rt, id)? {
            return Err(Error::usage(anyhow!(
                "--name {id}: the name is in use by container {other}"
            )));
        }
        return Ok(None);
    }
    let (name, lock) = peapod_runtime::names::generate(rt)?;
    let mut annotations = spec.annotations().clone().unwrap_or_default();
    annotations.insert(NAME_ANNOTATION.to_owned(), name);
    spec.set_annotations(Some(annotations));
    Ok(Some(lock))
}
