//! OCI image layout directories: `oci-layout`, `index.json` and `blobs/sha256/…`.
//!
//! Everything is read and written through the `oci-spec` types. JSON is written with keys in
//! sorted order (maps included), so an image's digests depend only on its content. Tags are the
//! `org.opencontainers.image.ref.name` annotation of `index.json` entries, as skopeo and umoci
//! use them; references are written `oci:PATH[:TAG]`. Docker schema-2 manifests, manifest lists
//! and configs are accepted on read.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::{
    ANNOTATION_REF_NAME, Descriptor, Digest, DigestAlgorithm, History, ImageConfiguration, ImageIndex,
    ImageIndexBuilder, ImageManifest, ImageManifestBuilder, MediaType, OciLayout, OciLayoutBuilder, SCHEMA_VERSION,
};
use sha2::{Digest as _, Sha256};

use crate::layer::{Layer, LayerError, LayerInfo, LayerOptions, sha256_digest};

/// Docker schema-2 manifest media type, accepted as an image manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type, accepted as an image index.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config media type, accepted as an image configuration.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Deepest chain of nested indexes followed when resolving a tag.
const MAX_INDEX_DEPTH: usize = 8;

/// Errors of layout operations.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// A file of the layout could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A JSON document of the layout is malformed.
    #[error("{path}: invalid {what}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What the document should have been.
        what: &'static str,
        /// The parse error.
        source: oci_spec::OciSpecError,
    },
    /// The directory is not an OCI image layout.
    #[error("{path} is not an OCI image layout (no oci-layout file)")]
    NotALayout {
        /// The directory.
        path: PathBuf,
    },
    /// No manifest carries the tag (or the index is empty).
    #[error("{layout}: no image tagged {tag:?}")]
    TagNotFound {
        /// The layout.
        layout: PathBuf,
        /// The tag asked for (`None`: any).
        tag: Option<String>,
    },
    /// No tag was given and the index holds several manifests, or a tag names several.
    #[error("{layout}: {count} images match tag {tag:?}; name one")]
    Ambiguous {
        /// The layout.
        layout: PathBuf,
        /// The tag asked for.
        tag: Option<String>,
        /// How many entries matched.
        count: usize,
    },
    /// No manifest of an index is for this platform.
    #[error("{layout}: index {digest} has no manifest for {os}/{arch}")]
    NoPlatform {
        /// The layout.
        layout: PathBuf,
        /// The index blob.
        digest: String,
        /// Wanted OS.
        os: String,
        /// Wanted architecture.
        arch: String,
    },
    /// A blob's content does not match its digest.
    #[error("blob {expected} has digest {actual}")]
    DigestMismatch {
        /// The digest it is stored under.
        expected: String,
        /// The digest of its content.
        actual: String,
    },
    /// A digest uses an algorithm this layout does not store.
    #[error("unsupported digest {digest}: only sha256 is stored")]
    UnsupportedDigest {
        /// The digest.
        digest: String,
    },
    /// A descriptor has a media type that is not valid where it is used.
    #[error("descriptor {digest}: media type {media_type} is not a {expected}")]
    MediaType {
        /// The blob.
        digest: String,
        /// Its media type.
        media_type: String,
        /// What was expected.
        expected: &'static str,
    },
    /// Nested indexes go deeper than the limit.
    #[error("{layout}: image indexes nested deeper than {MAX_INDEX_DEPTH}")]
    TooDeep {
        /// The layout.
        layout: PathBuf,
    },
    /// A reference or tag is malformed.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference.
        reference: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Writing a layer failed.
    #[error(transparent)]
    Layer(#[from] LayerError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LayoutError + '_ {
    move |source| LayoutError::Io { path: path.to_path_buf(), source }
}

/// An `oci:PATH[:TAG]` reference to an image in a layout directory.
///
/// As in skopeo, the path ends at the first `:` after `oci:`; the rest is the tag.
///
/// ```
/// use nullspace_native::layout::OciRef;
///
/// let r: OciRef = "oci:/var/images/base:v1".parse()?;
/// assert_eq!(r.path, std::path::Path::new("/var/images/base"));
/// assert_eq!(r.tag.as_deref(), Some("v1"));
/// assert_eq!(r.to_string(), "oci:/var/images/base:v1");
/// assert!("oci:dir:bad tag".parse::<OciRef>().is_err());
/// # Ok::<(), nullspace_native::layout::LayoutError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciRef {
    /// The layout directory.
    pub path: PathBuf,
    /// The tag (`org.opencontainers.image.ref.name`), if any.
    pub tag: Option<String>,
}

impl FromStr for OciRef {
    type Err = LayoutError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| LayoutError::InvalidReference { reference: s.to_owned(), reason };
        let rest = s.strip_prefix("oci:").ok_or_else(|| invalid("must start with `oci:`"))?;
        let (path, tag) = match rest.split_once(':') {
            Some((p, t)) => (p, Some(t)),
            None => (rest, None),
        };
        if path.is_empty() {
            return Err(invalid("empty layout path"));
        }
        if let Some(tag) = tag {
            validate_tag(tag).map_err(invalid)?;
        }
        Ok(Self { path: PathBuf::from(path), tag: tag.map(str::to_owned) })
    }
}

impl std::fmt::Display for OciRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "oci:{}", self.path.display())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        Ok(())
    }
}

/// Checks a tag against the image-spec grammar of `org.opencontainers.image.ref.name`:
/// components of alphanumerics joined by one of `-._:@+` or `--`, separated by `/`.
///
/// # Errors
/// A short reason when the tag does not match.
pub fn validate_tag(tag: &str) -> Result<(), &'static str> {
    if tag.is_empty() {
        return Err("empty tag");
    }
    for component in tag.split('/') {
        let bytes = component.as_bytes();
        let mut i = 0;
        let mut expect_alnum = true;
        if bytes.is_empty() {
            return Err("empty tag component");
        }
        while i < bytes.len() {
            let b = bytes[i];
            if b.is_ascii_alphanumeric() {
                expect_alnum = false;
                i += 1;
            } else if expect_alnum {
                return Err("tag separators must sit between letters or digits");
            } else if bytes[i..].starts_with(b"--") {
                expect_alnum = true;
                i += 2;
            } else if b"-._:@+".contains(&b) {
                expect_alnum = true;
                i += 1;
            } else {
                return Err("tag holds a character outside [A-Za-z0-9-._:@+/]");
            }
        }
        if expect_alnum {
            return Err("tag components must end with a letter or digit");
        }
    }
    Ok(())
}

/// Whether `mt` is an image manifest (OCI or Docker schema 2).
pub fn is_manifest(mt: &MediaType) -> bool {
    match mt {
        MediaType::ImageManifest => true,
        MediaType::Other(s) => s == DOCKER_MANIFEST,
        _ => false,
    }
}

/// Whether `mt` is an image index (OCI or Docker manifest list).
pub fn is_index(mt: &MediaType) -> bool {
    match mt {
        MediaType::ImageIndex => true,
        MediaType::Other(s) => s == DOCKER_MANIFEST_LIST,
        _ => false,
    }
}

/// Whether `mt` is an image configuration (OCI or Docker).
pub fn is_config(mt: &MediaType) -> bool {
    match mt {
        MediaType::ImageConfig => true,
        MediaType::Other(s) => s == DOCKER_CONFIG,
        _ => false,
    }
}

/// Serializes a spec type with every object's keys sorted, so equal values give equal bytes
/// (the spec types keep maps such as labels in `HashMap`s).
fn canonical_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    fn sort(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                map.sort_keys();
                map.values_mut().for_each(sort);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(sort),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(value)?;
    sort(&mut v);
    serde_json::to_vec(&v)
}

/// Formats seconds since the epoch as RFC 3339 UTC (`1970-01-01T00:00:00Z`), for the
/// `created` fields of configs and history built from `SOURCE_DATE_EPOCH`.
///
/// ```
/// assert_eq!(nullspace_native::layout::epoch_to_rfc3339(0), "1970-01-01T00:00:00Z");
/// assert_eq!(nullspace_native::layout::epoch_to_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
/// ```
pub fn epoch_to_rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Records a layer in a configuration: its `diff_id` goes to `rootfs.diff_ids` and `history`
/// is appended (with `empty_layer` cleared).
pub fn append_layer(config: &mut ImageConfiguration, layer: &LayerInfo, mut history: History) {
    config.rootfs_mut().diff_ids_mut().push(layer.diff_id.to_string());
    history.set_empty_layer(None);
    config.history_mut().get_or_insert_with(Vec::new).push(history);
}

/// The config and manifest blobs of an image, serialised canonically: the same bytes whether
/// they go into an OCI layout ([`OciDir::write_image`]) or to a registry, so both have the same
/// manifest digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageBlobs {
    /// The config's JSON.
    pub config: Vec<u8>,
    /// The OCI image manifest's JSON.
    pub manifest: Vec<u8>,
    /// The manifest's descriptor (media type, size, digest).
    pub manifest_descriptor: Descriptor,
}

impl ImageBlobs {
    /// Serialises `config` and a manifest naming it and `layers`.
    ///
    /// ```
    /// use nullspace_native::layout::ImageBlobs;
    /// use oci_spec::image::{Arch, ImageConfigurationBuilder, Os};
    /// let config = ImageConfigurationBuilder::default().architecture(Arch::Amd64).os(Os::Linux).build()?;
    /// let blobs = ImageBlobs::new(&config, &[])?;
    /// assert_eq!(blobs.manifest_descriptor.size(), blobs.manifest.len() as u64);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`LayoutError::Json`] if a document cannot be serialised.
    pub fn new(config: &ImageConfiguration, layers: &[Descriptor]) -> Result<Self, LayoutError> {
        let json_err = |what: &'static str| {
            move |e| LayoutError::Json { path: PathBuf::new(), what, source: oci_spec::OciSpecError::SerDe(e) }
        };
        let config_bytes = canonical_json(config).map_err(json_err("image config"))?;
        let config_desc = Descriptor::new(MediaType::ImageConfig, config_bytes.len() as u64, sha256_of(&config_bytes));
        let manifest: ImageManifest = ImageManifestBuilder::default()
            .schema_version(SCHEMA_VERSION)
            .media_type(MediaType::ImageManifest)
            .config(config_desc)
            .layers(layers.to_vec())
            .build()
            .map_err(|source| LayoutError::Json { path: PathBuf::new(), what: "image manifest", source })?;
        let manifest_bytes = canonical_json(&manifest).map_err(json_err("image manifest"))?;
        let manifest_descriptor =
            Descriptor::new(MediaType::ImageManifest, manifest_bytes.len() as u64, sha256_of(&manifest_bytes));
        Ok(Self { config: config_bytes, manifest: manifest_bytes, manifest_descriptor })
    }
}

fn sha256_of(bytes: &[u8]) -> Digest {
    let mut hasher = Sha256::new();
    hasher.update(bytes);
    sha256_digest(hasher)
}

/// An image read from a layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Descriptor of the manifest.
    pub descriptor: Descriptor,
    /// The manifest.
    pub manifest: ImageManifest,
    /// The configuration.
    pub config: ImageConfiguration,
}

/// An OCI image layout directory.
///
/// ```
/// use nullspace_native::layer::{Layer, LayerOptions};
/// use nullspace_native::layout::OciDir;
/// use oci_spec::image::{Arch, ImageConfigurationBuilder, Os};
///
/// let dir = tempfile::tempdir()?;
/// let oci = OciDir::create(dir.path())?;
/// let layer = oci.write_layer(&Layer::new(), &LayerOptions::default())?;
/// let mut config = ImageConfigurationBuilder::default()
///     .architecture(Arch::Amd64)
///     .os(Os::Linux)
///     .build()?;
/// nullspace_native::layout::append_layer(&mut config, &layer, Default::default());
/// let manifest = oci.write_image(&config, &[layer.descriptor()], Some("latest"))?;
/// assert_eq!(oci.resolve(Some("latest"))?.digest(), manifest.digest());
/// let image = oci.load_image(Some("latest"))?;
/// assert_eq!(image.config.rootfs().diff_ids().len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct OciDir {
    root: PathBuf,
}

impl OciDir {
    /// Opens the layout at `path`, creating the directory, `oci-layout`, `index.json` and
    /// `blobs/sha256` as needed.
    ///
    /// # Errors
    /// [`LayoutError::Io`] if they cannot be created.
    pub fn create(path: &Path) -> Result<Self, LayoutError> {
        let blobs = path.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
        let this = Self { root: path.to_path_buf() };
        let marker = path.join("oci-layout");
        if !marker.exists() {
            let layout: OciLayout = OciLayoutBuilder::default()
                .image_layout_version("1.0.0")
                .build()
                .map_err(|source| LayoutError::Json { path: marker.clone(), what: "oci-layout", source })?;
            this.write_json(&marker, &layout)?;
        }
        if !path.join("index.json").exists() {
            this.write_index(&empty_index()?)?;
        }
        Ok(this)
    }

    /// Opens an existing layout.
    ///
    /// # Errors
    /// [`LayoutError::NotALayout`] if `path/oci-layout` is missing.
    pub fn open(path: &Path) -> Result<Self, LayoutError> {
        if !path.join("oci-layout").is_file() {
            return Err(LayoutError::NotALayout { path: path.to_path_buf() });
        }
        Ok(Self { root: path.to_path_buf() })
    }

    /// The layout directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Where the blob with `digest` is (or would be) stored.
    ///
    /// # Errors
    /// [`LayoutError::UnsupportedDigest`] for a digest that is not sha256.
    pub fn blob_path(&self, digest: &Digest) -> Result<PathBuf, LayoutError> {
        if *digest.algorithm() != DigestAlgorithm::Sha256 {
            return Err(LayoutError::UnsupportedDigest { digest: digest.to_string() });
        }
        // oci-spec guarantees 64 lowercase hex digits for sha256, so this stays in blobs/.
        Ok(self.root.join("blobs").join("sha256").join(digest.digest()))
    }

    /// Stores `bytes` as a blob and returns its descriptor.
    ///
    /// # Errors
    /// [`LayoutError::Io`] if it cannot be written.
    pub fn write_blob(&self, media_type: MediaType, bytes: &[u8]) -> Result<Descriptor, LayoutError> {
        let mut hasher = Sha256::new();
        hasher.update(bytes);
        let digest = sha256_digest(hasher);
        let path = self.blob_path(&digest)?;
        if !path.exists() {
            self.write_atomic(&path, bytes)?;
        }
        Ok(Descriptor::new(media_type, bytes.len() as u64, digest))
    }

    /// Writes `layer` as a blob, streaming it through a temporary file in the layout.
    ///
    /// # Errors
    /// [`LayoutError::Layer`] if the layer cannot be written, [`LayoutError::Io`] otherwise.
    pub fn write_layer(&self, layer: &Layer, opts: &LayerOptions) -> Result<LayerInfo, LayoutError> {
        let dir = self.root.join("blobs").join("sha256");
        let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io_err(&dir))?;
        let mut out = io::BufWriter::new(tmp);
        let info = layer.write(&mut out, opts)?;
        let tmp = out.into_inner().map_err(|e| LayoutError::Io { path: dir.clone(), source: e.into_error() })?;
        let path = self.blob_path(&info.digest)?;
        tmp.persist(&path).map_err(|e| LayoutError::Io { path: path.clone(), source: e.error })?;
        Ok(info)
    }

    /// Opens a blob for streaming (not verified; see [`OciDir::read_blob`]).
    ///
    /// # Errors
    /// [`LayoutError::Io`] if it is missing.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, LayoutError> {
        let path = self.blob_path(digest)?;
        File::open(&path).map_err(io_err(&path))
    }

    /// Reads a whole blob, checking it against its digest.
    ///
    /// # Errors
    /// [`LayoutError::Io`] if it is missing, [`LayoutError::DigestMismatch`] if it is corrupt.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, LayoutError> {
        let path = self.blob_path(digest)?;
        let mut bytes = Vec::new();
        File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(io_err(&path))?;
        let mut hasher = Sha256::new();
        hasher.update(&bytes);
        let actual = sha256_digest(hasher);
        if actual != *digest {
            return Err(LayoutError::DigestMismatch { expected: digest.to_string(), actual: actual.to_string() });
        }
        Ok(bytes)
    }

    /// Reads `index.json`.
    ///
    /// # Errors
    /// [`LayoutError::Io`] or [`LayoutError::Json`].
    pub fn index(&self) -> Result<ImageIndex, LayoutError> {
        let path = self.root.join("index.json");
        let file = File::open(&path).map_err(io_err(&path))?;
        ImageIndex::from_reader(io::BufReader::new(file)).map_err(|source| LayoutError::Json {
            path,
            what: "image index",
            source,
        })
    }

    /// Stores `config` and a manifest referencing it and `layers`, and records the manifest in
    /// `index.json`, tagged `tag` (moving the tag from any image that had it).
    ///
    /// # Errors
    /// [`LayoutError::InvalidReference`] for a malformed tag; I/O and JSON errors otherwise.
    pub fn write_image(
        &self,
        config: &ImageConfiguration,
        layers: &[Descriptor],
        tag: Option<&str>,
    ) -> Result<Descriptor, LayoutError> {
        let blobs = ImageBlobs::new(config, layers).map_err(|e| match e {
            LayoutError::Json { what, source, .. } => LayoutError::Json { path: self.root.clone(), what, source },
            e => e,
        })?;
        self.write_blob(MediaType::ImageConfig, &blobs.config)?;
        let desc = self.write_blob(MediaType::ImageManifest, &blobs.manifest)?;
        match tag {
            Some(tag) => self.tag(&desc, tag)?,
            None => {
                let mut index = self.index()?;
                if !index.manifests().iter().any(|d| d.digest() == desc.digest()) {
                    let mut manifests = index.manifests().clone();
                    manifests.push(desc.clone());
                    index.set_manifests(manifests);
                    self.write_index(&index)?;
                }
            }
        }
        Ok(desc)
    }

    /// Points `tag` at `manifest` in `index.json`, removing it from other entries.
    ///
    /// # Errors
    /// [`LayoutError::InvalidReference`] for a malformed tag; I/O and JSON errors otherwise.
    pub fn tag(&self, manifest: &Descriptor, tag: &str) -> Result<(), LayoutError> {
        validate_tag(tag).map_err(|reason| LayoutError::InvalidReference { reference: tag.to_owned(), reason })?;
        let mut index = self.index()?;
        let mut manifests = index.manifests().clone();
        manifests.retain(|d| ref_name(d) != Some(tag));
        let mut entry = manifest.clone();
        let mut annotations = entry.annotations().clone().unwrap_or_default();
        annotations.insert(ANNOTATION_REF_NAME.to_owned(), tag.to_owned());
        entry.set_annotations(Some(annotations));
        manifests.push(entry);
        index.set_manifests(manifests);
        self.write_index(&index)
    }

    /// The manifest descriptor tagged `tag`, or the only image when `tag` is `None`. An index
    /// (or Docker manifest list) is followed to the manifest for this host's platform.
    ///
    /// # Errors
    /// [`LayoutError::TagNotFound`], [`LayoutError::Ambiguous`], [`LayoutError::NoPlatform`].
    pub fn resolve(&self, tag: Option<&str>) -> Result<Descriptor, LayoutError> {
        let index = self.index()?;
        let found: Vec<&Descriptor> =
            index.manifests().iter().filter(|d| tag.is_none() || ref_name(d) == tag).collect();
        let mut desc = match found.as_slice() {
            [] => {
                return Err(LayoutError::TagNotFound { layout: self.root.clone(), tag: tag.map(str::to_owned) });
            }
            [one] => (*one).clone(),
            many => {
                return Err(LayoutError::Ambiguous {
                    layout: self.root.clone(),
                    tag: tag.map(str::to_owned),
                    count: many.len(),
                });
            }
        };
        for _ in 0..MAX_INDEX_DEPTH {
            if is_manifest(desc.media_type()) {
                return Ok(desc);
            }
            if !is_index(desc.media_type()) {
                return Err(LayoutError::MediaType {
                    digest: desc.digest().to_string(),
                    media_type: desc.media_type().to_string(),
                    expected: "manifest or index",
                });
            }
            desc = self.pick_platform(&desc)?;
        }
        Err(LayoutError::TooDeep { layout: self.root.clone() })
    }

    /// The entry of the index `desc` for this host's platform (linux, host architecture).
    fn pick_platform(&self, desc: &Descriptor) -> Result<Descriptor, LayoutError> {
        let path = self.blob_path(desc.digest())?;
        let bytes = self.read_blob(desc.digest())?;
        let index = ImageIndex::from_reader(bytes.as_slice()).map_err(|source| LayoutError::Json {
            path,
            what: "image index",
            source,
        })?;
        let arch = host_arch();
        index
            .manifests()
            .iter()
            .find(|d| {
                d.platform()
                    .as_ref()
                    .is_some_and(|p| p.os().to_string() == "linux" && p.architecture().to_string() == arch)
            })
            .cloned()
            .ok_or_else(|| LayoutError::NoPlatform {
                layout: self.root.clone(),
                digest: desc.digest().to_string(),
                os: "linux".to_owned(),
                arch: arch.to_owned(),
            })
    }

    /// Reads the manifest `desc` points to.
    ///
    /// # Errors
    /// [`LayoutError::MediaType`] if `desc` is not a manifest; blob and JSON errors.
    pub fn read_manifest(&self, desc: &Descriptor) -> Result<ImageManifest, LayoutError> {
        if !is_manifest(desc.media_type()) {
            return Err(LayoutError::MediaType {
                digest: desc.digest().to_string(),
                media_type: desc.media_type().to_string(),
                expected: "image manifest",
            });
        }
        let bytes = self.read_blob(desc.digest())?;
        ImageManifest::from_reader(bytes.as_slice()).map_err(|source| LayoutError::Json {
            path: self.blob_path(desc.digest()).unwrap_or_default(),
            what: "image manifest",
            source,
        })
    }

    /// Reads the configuration of `manifest`.
    ///
    /// # Errors
    /// [`LayoutError::MediaType`] if the config descriptor is not a config; blob and JSON
    /// errors.
    pub fn read_config(&self, manifest: &ImageManifest) -> Result<ImageConfiguration, LayoutError> {
        let desc = manifest.config();
        if !is_config(desc.media_type()) {
            return Err(LayoutError::MediaType {
                digest: desc.digest().to_string(),
                media_type: desc.media_type().to_string(),
                expected: "image config",
            });
        }
        let bytes = self.read_blob(desc.digest())?;
        ImageConfiguration::from_reader(bytes.as_slice()).map_err(|source| LayoutError::Json {
            path: self.blob_path(desc.digest()).unwrap_or_default(),
            what: "image config",
            source,
        })
    }

    /// Resolves `tag` and reads its manifest and configuration.
    ///
    /// # Errors
    /// As [`OciDir::resolve`], [`OciDir::read_manifest`] and [`OciDir::read_config`].
    pub fn load_image(&self, tag: Option<&str>) -> Result<Image, LayoutError> {
        let descriptor = self.resolve(tag)?;
        let manifest = self.read_manifest(&descriptor)?;
        let config = self.read_config(&manifest)?;
        Ok(Image { descriptor, manifest, config })
    }

    fn to_json<T: serde::Serialize>(&self, what: &'static str, value: &T) -> Result<Vec<u8>, LayoutError> {
        canonical_json(value).map_err(|e| LayoutError::Json {
            path: self.root.clone(),
            what,
            source: oci_spec::OciSpecError::SerDe(e),
        })
    }

    fn write_json<T: serde::Serialize>(&self, path: &Path, value: &T) -> Result<(), LayoutError> {
        let bytes = self.to_json("layout document", value)?;
        self.write_atomic(path, &bytes)
    }

    fn write_index(&self, index: &ImageIndex) -> Result<(), LayoutError> {
        self.write_json(&self.root.join("index.json"), index)
    }

    /// Writes through a temporary file and a rename, so readers never see a partial file.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), LayoutError> {
        let dir = path.parent().unwrap_or(&self.root);
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
        tmp.write_all(bytes).map_err(io_err(path))?;
        tmp.persist(path).map_err(|e| LayoutError::Io { path: path.to_path_buf(), source: e.error })?;
        Ok(())
    }
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations().as_ref().and_then(|a: &HashMap<String, String>| a.get(ANNOTATION_REF_NAME)).map(String::as_str)
}

fn empty_index() -> Result<ImageIndex, LayoutError> {
    ImageIndexBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageIndex)
        .manifests(Vec::new())
        .build()
        .map_err(|source| LayoutError::Json { path: PathBuf::from("index.json"), what: "image index", source })
}

/// The host architecture in OCI (Go `GOARCH`) spelling.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}
