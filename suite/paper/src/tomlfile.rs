//! Reading TOML files into typed structs with errors that name the file and the key.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::Error;

/// Reads `path` as TOML into `T`; an error names the file, the key path (`runs[3].model`) and the
/// line.
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_toml(&text, path)
}

/// Parses `text`, read from `path`, as TOML into `T`.
pub fn parse_toml<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, Error> {
    let parse_error = |key: String, e: toml::de::Error| Error::Parse {
        path: path.to_path_buf(),
        key,
        message: e.message().to_string()
            + &e.span()
                .map(|s| {
                    let line = text[..s.start].lines().count().max(1);
                    format!(" (line {line})")
                })
                .unwrap_or_default(),
    };
    let de = toml::de::Deserializer::parse(text).map_err(|e| parse_error(".".into(), e))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        parse_error(key, e.into_inner())
    })
}
