//! Helpers of the image tests: layers, configs and manifests built in memory.

#![allow(dead_code)]

use std::io::Write;

use peapod_image::{digest_of, Digest, Store};
use serde_json::json;

/// One tar entry of a test layer.
#[derive(Debug)]
pub enum Entry<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
    Link(&'a str, &'a str),
    Char(&'a str, u32, u32),
    /// A regular file with one extended attribute (a pax `SCHILY.xattr.` record).
    XattrFile(&'a str, &'a [u8], u32, &'a str, &'a [u8]),
}

/// One pax record: `LEN key=value\n`, LEN counting the whole record, its own digits too.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len = len.to_string().len() + rest;
    }
    let mut record = format!("{len} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

/// An uncompressed tar of `entries`, owned by root.
pub fn layer(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        let (name, data): (&str, &[u8]) = match entry {
            Entry::Dir(name, mode) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(*mode);
                (name, &[])
            }
            Entry::File(name, data, mode) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                (name, data)
            }
            Entry::Symlink(name, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                set_link(&mut header, target);
                (name, &[])
            }
            Entry::Link(name, target) => {
                header.set_entry_type(tar::EntryType::Link);
                header.set_mode(0o644);
                set_link(&mut header, target);
                (name, &[])
            }
            Entry::XattrFile(name, data, mode, xattr, value) => {
                let record = pax_record(&format!("SCHILY.xattr.{xattr}"), value);
                let mut pax = tar::Header::new_ustar();
                pax.set_entry_type(tar::EntryType::XHeader);
                pax.set_path("PaxHeader").expect("pax name");
                pax.set_size(record.len() as u64);
                pax.set_mode(0o644);
                pax.set_cksum();
                builder.append(&pax, record.as_slice()).expect("pax");
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                (name, data)
            }
            Entry::Char(name, major, minor) => {
                header.set_entry_type(tar::EntryType::Char);
                header.set_mode(0o666);
                header.set_device_major(*major).expect("major");
                header.set_device_minor(*minor).expect("minor");
                (name, &[])
            }
        };
        header.set_size(data.len() as u64);
        set_name(&mut header, name);
        header.set_cksum();
        builder.append(&header, data).expect("append");
    }
    builder.into_inner().expect("tar")
}

/// Writes the name bytes as they are: `tar::Header::set_path` refuses `..` and absolute
/// names, which hostile layers need.
fn set_name(header: &mut tar::Header, name: &str) {
    let bytes = name.as_bytes();
    let field = &mut header.as_old_mut().name;
    field.fill(0);
    field[..bytes.len()].copy_from_slice(bytes);
}

fn set_link(header: &mut tar::Header, target: &str) {
    let bytes = target.as_bytes();
    let field = &mut header.as_old_mut().linkname;
    field.fill(0);
    field[..bytes.len()].copy_from_slice(bytes);
}

/// Gzip of `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("gzip");
    encoder.finish().expect("gzip")
}

/// Puts the layers (each stored as given, with the uncompressed tar for its diff_id) and a
/// config and manifest for them into `store`; returns the manifest bytes.
pub fn image(store: &Store, layers: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|(tar, _)| digest_of(tar).to_string())
        .collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .expect("config");
    let config_digest = store.put_blob(&config).expect("config blob");
    let mut descriptors = Vec::new();
    for (tar, stored) in layers {
        let digest = store.put_blob(stored).expect("layer blob");
        let media_type = if stored == tar {
            "application/vnd.oci.image.layer.v1.tar"
        } else {
            "application/vnd.oci.image.layer.v1.tar+gzip"
        };
        descriptors.push(json!({"mediaType": media_type, "digest": digest, "size": stored.len()}));
    }
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": descriptors,
    }))
    .expect("manifest")
}

/// The digest of `bytes`, as a `Digest`.
pub fn digest(bytes: &[u8]) -> Digest {
    digest_of(bytes)
}
