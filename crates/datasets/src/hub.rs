//! Fetching Hub-layout parquet files through the `hf-hub` crate's sync (`ureq`, rustls) API and the
//! normal HF cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`).
//!
//! The cache is consulted first, without network: the `datasets--OWNER--NAME/refs/main` +
//! `snapshots/REV/...` layout is resolved here and the snapshot folder listed. `HF_HUB_OFFLINE=1`
//! stops there; otherwise the repository's file list is fetched and the split's files downloaded.
use crate::Split;
use crate::dataset_id::HubSource;
use crate::parquet_hub::split_files_in;
use hf_hub::Cache;
use hf_hub::api::sync::ApiBuilder;
use std::path::PathBuf;

/// Whether `HF_HUB_OFFLINE` asks for no network access (`1`, `true`, `yes`, `on`).
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// The HF hub cache directory in effect: `HF_HUB_CACHE` (or the older `HUGGINGFACE_HUB_CACHE`),
/// else `HF_HOME/hub`, else `~/.cache/huggingface/hub`.
pub fn cache_dir() -> PathBuf {
    ["HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"]
        .iter()
        .find_map(|k| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| Cache::from_env().path().clone())
}

/// The cache folder of the dataset repository `repo` (`OWNER/NAME`).
fn repo_cache_dir(repo: &str) -> PathBuf {
    cache_dir().join(format!("datasets--{}", repo.replace('/', "--")))
}

/// The parquet files of `split` of `hub` already in the HF cache, without any network access.
pub fn cached_split_files(hub: HubSource, split: Split) -> Option<Vec<PathBuf>> {
    let repo_dir = repo_cache_dir(hub.repo);
    let rev = std::fs::read_to_string(repo_dir.join("refs/main")).ok()?;
    let rev = rev.trim();
    if rev.is_empty() || rev.contains(['/', '\\']) || rev == ".." {
        return None;
    }
    let dir = repo_dir.join("snapshots").join(rev);
    let files = split_files_in(&dir, hub.config_dir, split);
    (!files.is_empty()).then_some(files)
}

/// Whether `text` matches the shell-style `pattern`, where `*` matches any run of characters
/// (including `/`, as `fnmatch` does for the Hub's allow patterns).
fn glob_match(pattern: &str, text: &str) -> bool {
    let Some((head, rest)) = pattern.split_once('*') else { return pattern == text };
    let Some(mut text) = text.strip_prefix(head) else { return false };
    loop {
        if glob_match(rest, text) {
            return true;
        }
        let mut chars = text.chars();
        if chars.next().is_none() {
            return false;
        }
        text = chars.as_str();
    }
}

/// The local paths of the parquet files of `split` of `hub`, fetching them when they are not
/// cached (unless offline). The error is a human explanation.
pub fn split_files(hub: HubSource, split: Split) -> std::result::Result<Vec<PathBuf>, String> {
    if let Some(files) = cached_split_files(hub, split) {
        return Ok(files);
    }
    if offline() {
        return Err(format!(
            "HF_HUB_OFFLINE is set and no '{split}' parquet files of {} are in the HF cache {}",
            hub.repo,
            cache_dir().display()
        ));
    }
    let prefix = if hub.config_dir.is_empty() { String::new() } else { format!("{}/", hub.config_dir) };
    // The split's shards (`train-00000-of-00003.parquet`) and the converted layout (`train/0000.parquet`).
    let patterns = [format!("{prefix}*{}-*.parquet", split.as_str()), format!("{prefix}*{}/*.parquet", split.as_str())];

    // `Cache::from_env` reads the token from `HF_HOME/token`; `HF_TOKEN` takes precedence.
    let token = std::env::var("HF_TOKEN").ok().filter(|t| !t.trim().is_empty()).or_else(|| Cache::from_env().token());
    let api = ApiBuilder::from_cache(Cache::new(cache_dir()))
        .with_token(token)
        .with_endpoint(std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".to_string()))
        .build()
        .map_err(|e| format!("cannot set up the Hub client: {e}"))?;
    let repo = api.dataset(hub.repo.to_string());
    let info = repo.info().map_err(|e| format!("cannot list the files of the Hub repository {}: {e}", hub.repo))?;
    let mut files = Vec::new();
    for name in info.siblings.iter().map(|s| s.rfilename.as_str()) {
        if patterns.iter().any(|p| glob_match(p, name)) {
            files.push(repo.get(name).map_err(|e| format!("download of {name} from {} failed: {e}", hub.repo))?);
        }
    }
    if files.is_empty() {
        return Err(format!("the Hub repository {} has no '{split}' parquet files", hub.repo));
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn glob_patterns_match_like_fnmatch() {
        assert!(glob_match("mnist/*train-*.parquet", "mnist/train-00000-of-00001.parquet"));
        assert!(glob_match("*test/*.parquet", "cropped_digits/test/0000.parquet"));
        assert!(glob_match("*train-*.parquet", "data/train-00000-of-00002.parquet"));
        assert!(!glob_match("mnist/*train-*.parquet", "mnist/test-00000-of-00001.parquet"));
        assert!(!glob_match("mnist/*train-*.parquet", "other/train-00000-of-00001.parquet"));
        assert!(!glob_match("*train-*.parquet", "data/train-00000-of-00001.parquet.lock"));
        assert!(glob_match("a*", "a") && glob_match("*", "") && !glob_match("a", "ab"));
    }
}
