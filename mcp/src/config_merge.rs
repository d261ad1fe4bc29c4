//! Merge-writing the `darkmatter` entry into a project config file (R-C3), for the clients that read
//! their MCP servers only from there (Cursor, Gemini, opencode).
//!
//! The user's own file must never be left changed: the existing file is parsed (JSON, with JSONC
//! comments and trailing commas tolerated), only the `darkmatter` entry is added or replaced, and the
//! file is written atomically (temp file + rename). Its exact previous bytes (or its absence) are kept
//! and put back when the LAST live child using it ends: children overlap, and 0.5.3's per-child
//! backup let the first exit restore the file under the second. The reference counts and the
//! originals are persisted (`<spawn dir>/merges.json`, written before the file is touched), so after
//! a crash the next start puts every file back. A file that does not parse is left untouched and
//! the spawn fails with `config file <path> is not valid JSON`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::profiles::{config_entry, ConfigFormat, ServerCommand};

/// Largest config file merged: a client config is a few KiB; anything bigger is not one.
pub const CONFIG_FILE_BYTES_MAX: usize = 1 << 20;

/// Files holding our entry now, with what to put back.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    files: BTreeMap<PathBuf, Held>,
}

/// One file in use by `refs` live children.
#[derive(Debug, Serialize, Deserialize)]
struct Held {
    refs: u32,
    /// The file's bytes before the first child, hex (`None`: there was no file).
    original_hex: Option<String>,
    /// Directories created for it, deepest first, removed again when empty.
    created_dirs: Vec<PathBuf>,
}

/// The merge-writes of one node's children.
pub struct Merges {
    state_path: PathBuf,
    state: Mutex<State>,
}

impl Merges {
    /// Opens the record in `spawn_dir` and repairs what a crashed run left: every file still marked
    /// in use gets its original back. Returns the merges and the files repaired.
    pub fn open(spawn_dir: &Path) -> (Self, Vec<PathBuf>) {
        let state_path = spawn_dir.join("merges.json");
        let left: State = fs::read(&state_path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        let mut repaired = Vec::new();
        for (path, held) in &left.files {
            if restore(path, held).is_ok() {
                repaired.push(path.clone());
            }
        }
        let merges = Self { state_path, state: Mutex::new(State::default()) };
        if !left.files.is_empty() {
            let _ = merges.save(&State::default());
        }
        (merges, repaired)
    }

    /// Puts `server` as the `darkmatter` entry into `path` (in `format`) for one more child.
    pub fn acquire(&self, path: &Path, format: ConfigFormat, server: &ServerCommand) -> Result<(), String> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let current = read_limited(path)?;
        let merged = merge(current.as_deref(), format, server)
            .ok_or_else(|| format!("config file {} is not valid JSON", path.display()))?;
        if !state.files.contains_key(path) {
            let created_dirs = missing_dirs(path);
            let held = Held { refs: 0, original_hex: current.as_deref().map(hex::encode), created_dirs };
            state.files.insert(path.to_owned(), held);
        }
        state.files.get_mut(path).expect("inserted above").refs += 1;
        // Recorded before the file changes, so a crash in between is repaired either way.
        self.save(&state).map_err(|e| format!("cannot record {}: {e}", self.state_path.display()))?;
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        write_atomic(path, &merged).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// One child using `path` ended; the last one puts the original back.
    pub fn release(&self, path: &Path) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(held) = state.files.get_mut(path) else { return };
        held.refs = held.refs.saturating_sub(1);
        if held.refs > 0 {
            return;
        }
        let held = state.files.remove(path).expect("present above");
        if let Err(e) = restore(path, &held) {
            eprintln!("darkmatter: cannot restore {}: {e}", path.display());
            state.files.insert(path.to_owned(), held);
        }
        let _ = self.save(&state);
    }

    fn save(&self, state: &State) -> io::Result<()> {
        if let Some(dir) = self.state_path.parent() {
            runtime_smol::storage::ensure_dir(dir).map_err(io::Error::other)?;
        }
        write_atomic(&self.state_path, &serde_json::to_vec(state).expect("serialisable"))
    }
}

fn read_limited(path: &Path) -> Result<Option<Vec<u8>>, String> {
    match fs::read(path) {
        Ok(b) if b.len() > CONFIG_FILE_BYTES_MAX => Err(format!("config file {} is too large", path.display())),
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// The file with our entry in it; `None` when `current` is not a JSON(C) object.
fn merge(current: Option<&[u8]>, format: ConfigFormat, server: &ServerCommand) -> Option<Vec<u8>> {
    let mut root = match current {
        None => Value::Object(Map::new()),
        Some(bytes) => serde_json::from_str::<Value>(&strip_jsonc(std::str::from_utf8(bytes).ok()?)).ok()?,
    };
    let (key, entry) = config_entry(format, server);
    let section = root.as_object_mut()?.entry(key).or_insert_with(|| Value::Object(Map::new()));
    section.as_object_mut()?.insert("darkmatter".to_owned(), entry);
    let mut out = serde_json::to_vec_pretty(&root).ok()?;
    out.push(b'\n');
    Some(out)
}

/// Puts back what `held` recorded: the exact bytes, or no file (and no directories we created).
fn restore(path: &Path, held: &Held) -> io::Result<()> {
    match &held.original_hex {
        Some(h) => write_atomic(path, &hex::decode(h).map_err(io::Error::other)?),
        None => {
            match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            for dir in &held.created_dirs {
                let _ = fs::remove_dir(dir); // only when empty
            }
            Ok(())
        }
    }
}

/// The parent directories of `path` that do not exist yet, deepest first.
fn missing_dirs(path: &Path) -> Vec<PathBuf> {
    path.ancestors().skip(1).take_while(|d| !d.as_os_str().is_empty() && !d.exists()).map(Path::to_path_buf).collect()
}

/// Writes `bytes` to `path` through a temp file in the same directory and a rename, keeping the
/// file's permissions when it exists.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.darkmatter-tmp"));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    if let Ok(meta) = fs::metadata(path) {
        fs::set_permissions(&tmp, meta.permissions())?;
    }
    fs::rename(&tmp, path)
}

/// JSON from JSONC: comments (`//`, `/* */`) and trailing commas removed, strings untouched.
fn strip_jsonc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push(c);
                while let Some(s) = chars.next() {
                    out.push(s);
                    if s == '\\' {
                        if let Some(e) = chars.next() {
                            out.push(e);
                        }
                    } else if s == '"' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for s in chars.by_ref() {
                    if s == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for s in chars.by_ref() {
                    if prev == '*' && s == '/' {
                        break;
                    }
                    prev = s;
                }
            }
            _ => out.push(c),
        }
    }
    drop_trailing_commas(&out)
}

fn drop_trailing_commas(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for (i, &c) in chars.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            out.push(c);
            continue;
        }
        match c {
            '"' => in_string = true,
            ',' if matches!(chars[i + 1..].iter().find(|n| !n.is_whitespace()), Some('}' | ']')) => continue,
            _ => {}
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(token: &str) -> ServerCommand {
        ServerCommand {
            command: "/bin/darkmatter".into(),
            args: vec![],
            env: vec![("DARKMATTER_SPAWN_TOKEN".into(), token.into())],
        }
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dm-merge-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    const USER_FILE: &str = "{\n  // my providers\n  \"provider\": {\"x\": {\"model\": \"a//b\"}},\n}\n";

    #[test]
    fn overlapping_children_leave_the_users_file_byte_identical_after_the_last() {
        let dir = temp("overlap");
        let file = dir.join("opencode.json");
        fs::write(&file, USER_FILE).unwrap();
        let (m, _) = Merges::open(&dir.join(".darkmatter/spawn"));
        m.acquire(&file, ConfigFormat::OpencodeJson, &server("t1")).unwrap();
        m.acquire(&file, ConfigFormat::OpencodeJson, &server("t2")).unwrap();
        let v: Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
        assert_eq!(v["provider"]["x"]["model"], "a//b", "the user's entries are kept");
        assert_eq!(v["mcp"]["darkmatter"]["environment"]["DARKMATTER_SPAWN_TOKEN"], "t2");
        m.release(&file);
        assert_ne!(fs::read_to_string(&file).unwrap(), USER_FILE, "one child still runs");
        m.release(&file);
        assert_eq!(fs::read_to_string(&file).unwrap(), USER_FILE);
    }

    #[test]
    fn a_file_that_did_not_exist_is_removed_with_its_directory() {
        let dir = temp("absent");
        let file = dir.join(".cursor/mcp.json");
        let (m, _) = Merges::open(&dir.join(".darkmatter/spawn"));
        m.acquire(&file, ConfigFormat::McpServersJson, &server("t")).unwrap();
        assert!(file.exists());
        m.release(&file);
        assert!(!file.exists());
        assert!(!dir.join(".cursor").exists());
    }

    #[test]
    fn an_unparsable_file_is_left_untouched_and_refused() {
        let dir = temp("bad");
        let file = dir.join("opencode.json");
        fs::write(&file, "{ not json").unwrap();
        let (m, _) = Merges::open(&dir.join(".darkmatter/spawn"));
        let err = m.acquire(&file, ConfigFormat::OpencodeJson, &server("t")).unwrap_err();
        assert_eq!(err, format!("config file {} is not valid JSON", file.display()));
        assert_eq!(fs::read_to_string(&file).unwrap(), "{ not json");
    }

    #[test]
    fn a_crash_is_repaired_at_the_next_start() {
        let dir = temp("crash");
        let file = dir.join("opencode.json");
        fs::write(&file, USER_FILE).unwrap();
        let spawn_dir = dir.join(".darkmatter/spawn");
        let (m, _) = Merges::open(&spawn_dir);
        m.acquire(&file, ConfigFormat::OpencodeJson, &server("t")).unwrap();
        drop(m); // the node died with a child running
        let (_again, repaired) = Merges::open(&spawn_dir);
        assert_eq!(repaired, std::slice::from_ref(&file));
        assert_eq!(fs::read_to_string(&file).unwrap(), USER_FILE);
    }

    #[test]
    fn jsonc_comments_and_trailing_commas_but_not_string_contents() {
        let v: Value = serde_json::from_str(&strip_jsonc(USER_FILE)).unwrap();
        assert_eq!(v["provider"]["x"]["model"], "a//b");
        let tricky = r#"{"a": "x,}", "b": "/* no */", "c": [1, 2,],}"#;
        let v: Value = serde_json::from_str(&strip_jsonc(tricky)).unwrap();
        assert_eq!(v, serde_json::json!({"a": "x,}", "b": "/* no */", "c": [1, 2]}));
    }
}
