//! The names of the built-in datasets and where their Hub copies are: a leaf module the loaders
//! and the registry both read, so neither imports the other for it.
use crate::{DatasetError, Result, Split};
use std::fmt;

/// The digit datasets this crate knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DatasetId {
    Mnist,
    MnistM,
    Svhn,
    Usps,
    SynDigits,
}

/// Where a dataset's files are on the Hugging Face Hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubSource {
    /// `OWNER/NAME` of the dataset repository.
    pub repo: &'static str,
    /// Folder of the configuration inside the repository (`""` for all of it); the split's files
    /// are the parquet files below it whose names start with the split name.
    pub config_dir: &'static str,
}

impl DatasetId {
    /// All datasets, in the order they are listed.
    pub const ALL: [DatasetId; 5] =
        [DatasetId::Mnist, DatasetId::MnistM, DatasetId::Svhn, DatasetId::Usps, DatasetId::SynDigits];

    /// Canonical name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            DatasetId::Mnist => "mnist",
            DatasetId::MnistM => "mnist-m",
            DatasetId::Svhn => "svhn",
            DatasetId::Usps => "usps",
            DatasetId::SynDigits => "syn-digits",
        }
    }

    /// Folder name inside the data directory.
    pub fn folder(self) -> &'static str {
        match self {
            DatasetId::Mnist => "mnist",
            DatasetId::MnistM => "mnist_m",
            DatasetId::Svhn => "svhn",
            DatasetId::Usps => "usps",
            DatasetId::SynDigits => "syn_digits",
        }
    }

    /// Parses a name; `mnist_m` and `mnist-m` (any case) are the same dataset.
    pub fn parse(name: &str) -> Result<Self> {
        let norm = name.trim().to_ascii_lowercase().replace('_', "-");
        Self::ALL.into_iter().find(|id| id.name() == norm).ok_or_else(|| DatasetError::UnknownDataset {
            name: name.to_string(),
            known: Self::ALL.map(|d| d.name()).join(", "),
        })
    }

    /// The splits the dataset has.
    pub fn splits(self) -> &'static [Split] {
        match self {
            DatasetId::Svhn => &[Split::Train, Split::Test, Split::Extra],
            _ => &[Split::Train, Split::Test],
        }
    }

    /// Native image shape `[C, H, W]`.
    pub fn image_shape(self) -> [usize; 3] {
        match self {
            DatasetId::Mnist => [1, 28, 28],
            DatasetId::Usps => [1, 16, 16],
            DatasetId::MnistM | DatasetId::Svhn | DatasetId::SynDigits => [3, 32, 32],
        }
    }

    /// The Hub copy, where one exists.
    pub fn hub(self) -> Option<HubSource> {
        match self {
            DatasetId::Mnist => Some(HubSource { repo: "ylecun/mnist", config_dir: "mnist" }),
            DatasetId::MnistM => Some(HubSource { repo: "Mike0307/MNIST-M", config_dir: "" }),
            DatasetId::Svhn => Some(HubSource { repo: "ufldl-stanford/svhn", config_dir: "cropped_digits" }),
            DatasetId::Usps => Some(HubSource { repo: "flwrlabs/usps", config_dir: "" }),
            DatasetId::SynDigits => None,
        }
    }

    /// Human description of the local file formats recognised, for `data list`.
    pub fn formats(self) -> &'static str {
        match self {
            DatasetId::Mnist => "IDX (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-...) or parquet",
            DatasetId::MnistM => {
                "Ganin release (mnist_m_train/*.png + mnist_m_train_labels.txt, same for test) or parquet"
            }
            DatasetId::Svhn => "MATLAB v5 train_32x32.mat / test_32x32.mat / extra_32x32.mat or parquet",
            DatasetId::Usps => "ESL text zip.train.gz / zip.test.gz or parquet",
            DatasetId::SynDigits => "MATLAB v5 synth_train_32x32.mat / synth_test_32x32.mat or parquet",
        }
    }
}

impl fmt::Display for DatasetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DatasetId {
    type Err = DatasetError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// As its canonical name (`"mnist-m"`); either spelling reads back.
impl serde::Serialize for DatasetId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for DatasetId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Self::parse(&name).map_err(serde::de::Error::custom)
    }
}
