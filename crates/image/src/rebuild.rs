//! Rebuilding a corrupt `images.json` (a truncated write by another tool, a disk error)
//! from what the store holds: every complete image manifest among the blobs (its config
//! blob there, every layer unpacked) is an image again. Names come from what can still be
//! read of the old file (the records before the damage), else from the manifest's
//! annotations (`io.containerd.image.name`, `org.opencontainers.image.ref.name` when it is
//! a whole reference); an image with neither has no name, as after `docker load` of an
//! unnamed one, and is reached by its id.

use std::collections::BTreeSet;
use std::io::Read;

use crate::blob::{self, hex_of};
use crate::store::{normalized_name, ImageRecord, ImagesFile};
use crate::Digest;

/// A manifest is a few kilobytes; a blob larger than this is a layer and not read.
const MANIFEST_MAX: u64 = 4 << 20;

/// The manifest annotations that may name the image.
const NAME_ANNOTATIONS: [&str; 2] = [
    "io.containerd.image.name",
    "org.opencontainers.image.ref.name",
];

/// The records the store's content supports, named from `old` (the corrupt file's bytes)
/// where it still says: the old records' order first, then the other images by digest.
/// `complete` says whether a manifest's config and layers are all in the store.
pub(crate) fn records(
    manifests: Vec<(Digest, Vec<u8>)>,
    old: &[u8],
    complete: impl Fn(&Digest, &[u8]) -> Option<String>,
) -> ImagesFile {
    let salvaged = salvage(old);
    let mut images: Vec<ImageRecord> = Vec::new();
    let mut taken: BTreeSet<String> = BTreeSet::new();
    let mut found: Vec<(Digest, Vec<u8>, String)> = manifests
        .into_iter()
        .filter_map(|(digest, bytes)| {
            let media_type = complete(&digest, &bytes)?;
            Some((digest, bytes, media_type))
        })
        .collect();
    // The old file's order first: `images` lists them as they were added.
    let rank = |digest: &Digest| {
        salvaged
            .iter()
            .position(|r| r.manifest == digest.as_ref())
            .unwrap_or(usize::MAX)
    };
    found.sort_by(|a, b| (rank(&a.0), a.0.as_ref()).cmp(&(rank(&b.0), b.0.as_ref())));
    for (digest, bytes, media_type) in found {
        let mut names: Vec<String> = salvaged
            .iter()
            .filter(|r| r.manifest == digest.as_ref())
            .flat_map(|r| r.names.iter().cloned())
            .collect();
        if names.is_empty() {
            names.extend(annotated_name(&bytes));
        }
        // A name belongs to one image: the first that claims it.
        names.retain(|n| taken.insert(n.clone()));
        images.push(ImageRecord {
            manifest: digest.to_string(),
            media_type,
            names,
        });
    }
    ImagesFile { images }
}

/// The name a manifest's annotations give, when it is a whole reference.
fn annotated_name(manifest: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(manifest).ok()?;
    let annotations = value.get("annotations")?;
    NAME_ANNOTATIONS
        .iter()
        .filter_map(|key| annotations.get(key)?.as_str())
        // `ref.name` is often a tag alone (`latest`), which names no repository.
        .filter(|name| name.contains('/') || name.contains(':'))
        .find_map(normalized_name)
}

/// What the records before the damage in a corrupt `images.json` say: each record's
/// `manifest`, and those of its `names` (and `media_type`) whose text is whole. Read by
/// hand, since the file does not parse: the writer puts every record's `manifest` first.
pub(crate) fn salvage(old: &[u8]) -> Vec<ImageRecord> {
    let text = String::from_utf8_lossy(old);
    let mut records = Vec::new();
    for chunk in text.split("\"manifest\"").skip(1) {
        let mut strings = quoted_strings(chunk);
        let Some(manifest) = strings.next() else {
            continue;
        };
        if blob::parse_digest(&manifest).is_err() {
            continue;
        }
        let names = chunk
            .split_once("\"names\"")
            .and_then(|(_, rest)| rest.split_once('['))
            .map(|(_, list)| {
                let list = list.split(']').next().unwrap_or_default();
                quoted_strings(list)
                    .filter_map(|n| normalized_name(&n))
                    .collect()
            })
            .unwrap_or_default();
        records.push(ImageRecord {
            manifest,
            media_type: String::new(),
            names,
        });
    }
    records
}

/// The complete JSON strings in `text` (an unterminated last one left out), unescaped.
fn quoted_strings(text: &str) -> impl Iterator<Item = String> + '_ {
    let mut rest = text;
    std::iter::from_fn(move || loop {
        let start = rest.find('"')?;
        let after = &rest[start + 1..];
        let mut escaped = false;
        let end = after.char_indices().find_map(|(i, c)| {
            let closes = c == '"' && !escaped;
            escaped = c == '\\' && !escaped;
            closes.then_some(i)
        })?;
        let raw = &rest[start..start + 1 + end + 1];
        rest = &after[end + 1..];
        // A key: the caller wants values only.
        if rest.trim_start().starts_with(':') {
            continue;
        }
        if let Ok(value) = serde_json::from_str::<String>(raw) {
            return Some(value);
        }
    })
}

/// The blobs of `blob_dir` (`blobs/sha256`) that may be manifests: JSON objects no larger
/// than [`MANIFEST_MAX`], with their digest.
pub(crate) fn candidate_manifests(blob_dir: &std::path::Path) -> Vec<(Digest, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(blob_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.metadata()
                .is_ok_and(|m| m.is_file() && m.len() <= MANIFEST_MAX)
        })
        .filter_map(|e| {
            let digest = blob::parse_digest(&format!("sha256:{}", e.file_name().to_str()?)).ok()?;
            let mut bytes = Vec::new();
            std::fs::File::open(e.path())
                .ok()?
                .read_to_end(&mut bytes)
                .ok()?;
            let json = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
            (json && hex_of(&digest).is_ok()).then_some((digest, bytes))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn the_records_before_the_cut_keep_their_names() {
        let whole = format!(
            "{{\"images\": [{{\"manifest\": \"{A}\", \"media_type\": \"x\", \"names\": \
             [\"docker.io/library/busybox:latest\", \"example.com/a:1\"]}}, \
             {{\"manifest\": \"{B}\", \"media_type\": \"x\", \"names\": [\"docker.io/library/pause:3.9\"]}}]}}"
        );
        let cut = whole.find("pause").expect("pause") + 3;
        let records = salvage(&whole.as_bytes()[..cut]);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].manifest, A);
        assert_eq!(
            records[0].names,
            ["docker.io/library/busybox:latest", "example.com/a:1"]
        );
        // B's only name is cut in the middle: B is known, its name is not.
        assert_eq!(records[1].manifest, B);
        assert!(records[1].names.is_empty());
        assert!(salvage(b"\x00\xff garbage").is_empty());
    }

    #[test]
    fn names_go_to_the_first_image_and_annotations_name_the_others() {
        let a: Digest = A.parse().expect("digest");
        let b: Digest = B.parse().expect("digest");
        let annotated =
            br#"{"annotations": {"org.opencontainers.image.ref.name": "example.com/b:2"}}"#;
        let old = format!("{{\"images\": [{{\"manifest\": \"{A}\", \"names\": [\"busybox\"");
        let file = records(
            vec![(b.clone(), annotated.to_vec()), (a.clone(), b"{}".to_vec())],
            old.as_bytes(),
            |_, _| Some("m".to_owned()),
        );
        let names: Vec<(&str, &[String])> = file
            .images
            .iter()
            .map(|r| (r.manifest.as_str(), r.names.as_slice()))
            .collect();
        assert_eq!(
            names,
            [
                (A, &["docker.io/library/busybox:latest".to_owned()][..]),
                (B, &["example.com/b:2".to_owned()][..])
            ]
        );
        // An incomplete image is left out.
        let file = records(vec![(a, b"{}".to_vec())], b"", |_, _| None);
        assert!(file.images.is_empty());
    }
}
