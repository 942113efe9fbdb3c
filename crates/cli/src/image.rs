//! `peapod images`, `rmi` and `image ...`: one call of `peapod-image` each, printed.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use peapod_image::{Image, Reference, Store, UnpackOptions};
use peapod_runtime::{Error, Runtime};
use serde_json::json;

use crate::args::{Format, GlobalArgs, ImageCommand, ImagesArgs, RmiArgs, TagArgs};
use crate::output::outln;

/// The store `--storage`, `PEAPOD_STORAGE` or the default root names, unpacking as the
/// runtime runs (rootless or not).
pub(crate) fn store(rt: &Runtime, global: &GlobalArgs) -> Result<Store, Error> {
    let root = global
        .storage
        .clone()
        .or_else(|| {
            std::env::var_os("PEAPOD_STORAGE")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| peapod_image::default_root(rt.rootless));
    Store::open_with(&root, UnpackOptions::new(rt.rootless)).map_err(Error::runtime)
}

pub(crate) fn dispatch(store: &Store, command: ImageCommand) -> Result<i32, Error> {
    match command {
        ImageCommand::Ls(args) => list(store, &args),
        ImageCommand::Rm(args) => remove(store, &args),
        ImageCommand::Tag(args) => tag(store, &args),
        ImageCommand::Inspect(args) => {
            let mut out = Vec::new();
            for reference in &args.images {
                out.push(inspect_json(&find(store, reference)?));
            }
            outln!("{}", crate::to_json(&out)?);
            Ok(0)
        }
        ImageCommand::Load(args) => {
            let input = args
                .input
                .or(args.input_flag)
                .filter(|i| i.as_os_str() != "-");
            let images = match input {
                Some(input) => store.load(&input),
                // Standard input, as `docker load` reads it: `podman save x | peapod image load`.
                None => {
                    let stdin = std::io::stdin();
                    if stdin.is_terminal() {
                        return Err(Error::usage(anyhow::anyhow!(
                            "image load: standard input is a terminal: pipe an archive in or give FILE"
                        )));
                    }
                    store.load_from(stdin.lock(), Path::new("<stdin>"))
                }
            };
            for image in images.map_err(Error::runtime)? {
                // The store appends the name a load gives: the last is this archive's.
                match image.names.last() {
                    Some(name) => outln!("Loaded image: {name}"),
                    None => outln!("Loaded image ID: {}", image.id),
                }
            }
            Ok(0)
        }
        ImageCommand::Save(args) => {
            let image = find(store, &args.image)?;
            let name =
                peapod_image::normalized_name(&args.image).filter(|n| image.names.contains(n));
            let saved = match args.output.filter(|o| o.as_os_str() != "-") {
                Some(output) => store.save(&image, name.as_deref(), &output),
                None => {
                    let stdout = std::io::stdout();
                    // As docker: a tar on a terminal is never what was meant.
                    if stdout.is_terminal() {
                        return Err(Error::usage(anyhow::anyhow!(
                            "image save: refusing to write a tar archive to a terminal: give -o FILE or redirect standard output"
                        )));
                    }
                    // Into descriptor 1 itself: `Stdout` is line-buffered, which would cut a
                    // binary stream into small writes at every newline byte.
                    let fd = stdout
                        .as_fd()
                        .try_clone_to_owned()
                        .map_err(|e| Error::runtime(anyhow::anyhow!("standard output: {e}")))?;
                    store.save_to(
                        &image,
                        name.as_deref(),
                        std::fs::File::from(fd),
                        Path::new("<stdout>"),
                    )
                }
            };
            saved.map_err(Error::runtime)?;
            Ok(0)
        }
        ImageCommand::Import(args) => {
            let name = parse_name(&args.name)?;
            let image = store.import(&args.source, &name).map_err(Error::runtime)?;
            outln!("{}", image.id);
            Ok(0)
        }
        ImageCommand::Prune => {
            let pruned = store.prune().map_err(Error::runtime)?;
            outln!(
                "Removed {} blobs and {} layers; freed {} ({} bytes)",
                pruned.blobs,
                pruned.layers,
                human_size(pruned.bytes),
                pruned.bytes
            );
            Ok(0)
        }
    }
}

fn parse_name(name: &str) -> Result<Reference, Error> {
    name.parse::<Reference>()
        .map_err(|e| Error::usage(anyhow::anyhow!("invalid image name {name:?}: {e}")))
}

fn find(store: &Store, reference: &str) -> Result<Image, Error> {
    store
        .resolve(reference)
        .map_err(Error::runtime)?
        .ok_or_else(|| Error::runtime(peapod_image::Error::NotFound(reference.to_owned())))
}

/// `peapod images`: a row per name (`<none>` for an image without one): repository, tag,
/// manifest digest and image id (both shortened), size, creation time.
pub(crate) fn list(store: &Store, args: &ImagesArgs) -> Result<i32, Error> {
    let images = store.list().map_err(Error::runtime)?;
    if args.quiet {
        for image in &images {
            outln!("{}", short_id(image));
        }
        return Ok(0);
    }
    if args.format == Format::Json {
        let out: Vec<_> = images.iter().map(list_json).collect();
        outln!("{}", crate::to_json(&out)?);
        return Ok(0);
    }
    let mut rows = vec![[
        "REPOSITORY".to_owned(),
        "TAG".to_owned(),
        "DIGEST".to_owned(),
        "IMAGE ID".to_owned(),
        "SIZE".to_owned(),
        "CREATED".to_owned(),
    ]];
    for image in &images {
        let names: Vec<(String, String)> = if image.names.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            image.names.iter().map(|n| split_name(n)).collect()
        };
        for (repository, tag) in names {
            rows.push([
                repository,
                tag,
                format!(
                    "sha256:{}",
                    image.manifest_digest.digest().get(..12).unwrap_or_default()
                ),
                short_id(image),
                human_size(image.size),
                image
                    .created
                    .as_deref()
                    .map(|c| c.get(..16).unwrap_or(c).replace('T', " "))
                    .unwrap_or_default(),
            ]);
        }
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        outln!("{}", line.join("  ").trim_end());
    }
    Ok(0)
}

/// `peapod rmi`: each image untagged or removed, as docker prints it.
pub(crate) fn remove(store: &Store, args: &RmiArgs) -> Result<i32, Error> {
    for reference in &args.images {
        let removed = store
            .remove(reference, args.force)
            .map_err(Error::runtime)?;
        for name in removed.untagged {
            outln!("Untagged: {name}");
        }
        if let Some(id) = removed.deleted {
            outln!("Deleted: {id}");
        }
    }
    Ok(0)
}

/// `peapod tag SOURCE TARGET...`: each target becomes a name of the source's image.
pub(crate) fn tag(store: &Store, args: &TagArgs) -> Result<i32, Error> {
    let image = find(store, &args.source)?;
    for target in &args.targets {
        let name: peapod_image::Reference = target
            .parse()
            .map_err(|e| Error::usage(anyhow::anyhow!("{target:?} is not an image name: {e}")))?;
        if name.digest().is_some() {
            return Err(Error::usage(anyhow::anyhow!(
                "{target:?}: a new name has a tag, not a digest (the digest is the image's own)"
            )));
        }
        store.tag(&image, &name).map_err(Error::runtime)?;
    }
    Ok(0)
}

/// `registry/repository` and the tag (or `<none>` for a name by digest).
fn split_name(name: &str) -> (String, String) {
    if let Some((repository, _digest)) = name.split_once('@') {
        return (repository.to_owned(), "<none>".to_owned());
    }
    match name.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository.to_owned(), tag.to_owned()),
        _ => (name.to_owned(), "<none>".to_owned()),
    }
}

fn short_id(image: &Image) -> String {
    image.id.digest().chars().take(12).collect()
}

/// Bytes in SI units, as docker and podman print sizes.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    // Three significant digits, as docker's "%.3g".
    match unit {
        0 => format!("{bytes} B"),
        _ if value >= 100.0 => format!("{value:.0} {}", UNITS[unit]),
        _ if value >= 10.0 => format!("{value:.1} {}", UNITS[unit]),
        _ => format!("{value:.2} {}", UNITS[unit]),
    }
}

fn list_json(image: &Image) -> serde_json::Value {
    json!({
        "id": image.id,
        "names": image.names,
        "digest": image.manifest_digest,
        "size": image.size,
        "created": image.created,
    })
}

pub(crate) fn inspect_json(image: &Image) -> serde_json::Value {
    json!({
        "id": image.id,
        "names": image.names,
        "digest": image.manifest_digest,
        "mediaType": image.manifest_media_type,
        "size": image.size,
        "created": image.created,
        "architecture": image.config.architecture().to_string(),
        "os": image.config.os().to_string(),
        "config": image.config.config(),
        "rootfs": image.config.rootfs(),
        "layers": image.layers,
    })
}
