//! Where a domain's images come from: one of the built-in datasets by name, or a path the user
//! gives (a class-folder tree, a flat folder of images, or a list file; see
//! [`crate::image_folder`]). Written as a plain string in recipes and JSON: the dataset's name, or
//! the path.
use crate::dataset_id::DatasetId;
use std::fmt;
use std::path::PathBuf;

/// A built-in dataset or a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataRef {
    Builtin(DatasetId),
    Path(PathBuf),
}

impl DataRef {
    /// A built-in dataset's name (any spelling [`DatasetId::parse`] takes) unless `text` has a
    /// path's form (a separator, or a leading `.` or `~`); anything else is a path, which the
    /// loader checks. A folder named like a built-in dataset is given as `./usps`.
    pub fn parse(text: &str) -> Self {
        if !has_path_form(text)
            && let Ok(id) = DatasetId::parse(text)
        {
            return DataRef::Builtin(id);
        }
        DataRef::Path(PathBuf::from(text))
    }

    /// The built-in dataset, if this is one.
    pub fn builtin(&self) -> Option<DatasetId> {
        match self {
            DataRef::Builtin(id) => Some(*id),
            DataRef::Path(_) => None,
        }
    }

    /// What recipes and summaries record: the dataset's name, or the path as given.
    pub fn as_string(&self) -> String {
        match self {
            DataRef::Builtin(id) => id.name().to_string(),
            DataRef::Path(p) => p.display().to_string(),
        }
    }

    /// A short name for folder names and tables: the dataset's name, or the path's last
    /// component (its file stem for a list file) with characters outside `[A-Za-z0-9._-]`
    /// replaced by `_`.
    pub fn short_name(&self) -> String {
        match self {
            DataRef::Builtin(id) => id.name().to_string(),
            DataRef::Path(p) => {
                let stem = if p.is_file() { p.file_stem() } else { p.file_name() };
                let raw = stem.map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "data".into());
                let clean: String = raw
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
                    .collect();
                if clean.is_empty() || clean.chars().all(|c| c == '.') { "data".into() } else { clean }
            }
        }
    }
}

/// A separator, or a leading `.` or `~`: written as a path whatever it names.
fn has_path_form(text: &str) -> bool {
    text.contains(['/', '\\']) || text.starts_with(['.', '~'])
}

impl fmt::Display for DataRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_string())
    }
}

impl serde::Serialize for DataRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_string())
    }
}

impl<'de> serde::Deserialize<'de> for DataRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(Self::parse(&text))
    }
}

impl From<DatasetId> for DataRef {
    fn from(id: DatasetId) -> Self {
        DataRef::Builtin(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(DataRef::parse("mnist_m"), DataRef::Builtin(DatasetId::MnistM));
        assert_eq!(DataRef::parse("USPS"), DataRef::Builtin(DatasetId::Usps));
        assert_eq!(DataRef::parse("./mnist"), DataRef::Path("./mnist".into()));
        assert_eq!(DataRef::parse("data/usps"), DataRef::Path("data/usps".into()));
        assert_eq!(DataRef::parse("cifar"), DataRef::Path("cifar".into()), "unknown names are paths");
        assert_eq!(DataRef::Path("/x/my digits/".into()).short_name(), "my_digits");
        assert_eq!(DataRef::Builtin(DatasetId::MnistM).short_name(), "mnist-m");
        let json = serde_json::to_string(&DataRef::Builtin(DatasetId::MnistM)).unwrap();
        assert_eq!(json, r#""mnist-m""#);
        assert_eq!(serde_json::from_str::<DataRef>(r#""/a/b""#).unwrap(), DataRef::Path("/a/b".into()));
    }
}
