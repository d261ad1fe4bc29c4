//! Client profiles (`DARKMATTER_CLIENT`): for each supported MCP client, the command line that runs
//! it headless on a prompt, and how that run is given this server. Pure data plus renderers; the
//! spawner (`crate::spawner`) uses them.
//!
//! Each client gets the server the way its vendor documents for a non-interactive run, writing
//! nothing into the user's project where the client allows it: Claude Code takes the config inline
//! (`--mcp-config <json> --strict-mcp-config`: a project `.mcp.json` would need an interactive
//! approval), Codex takes `-c` overrides, Kimi a file in the child's private directory. Cursor, Gemini
//! and opencode read only project files: their `darkmatter` entry is merge-written there and the file
//! restored afterwards. OpenClaw has no MCP client in this flow: its prompt says how to run the
//! server (degraded). 0.5.3 wrote one JSON shape into every client's file, whatever its format.

use serde_json::{json, Map, Value};

/// How a run is given the `darkmatter` server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// `--mcp-config <json> --strict-mcp-config`: nothing written (Claude Code).
    InlineJson,
    /// `-c mcp_servers.darkmatter.<key>=<TOML value>` overrides: nothing written (Codex).
    CodexOverrides,
    /// `--mcp-config-file <file>` with the file in the child's private directory (Kimi).
    PrivateFile,
    /// The `darkmatter` entry merge-written into this file of the project (relative path).
    ProjectFile {
        /// The file, relative to the project directory.
        path: &'static str,
        /// Its schema.
        format: ConfigFormat,
    },
    /// No MCP client: the prompt carries how to run the server (OpenClaw).
    InPrompt,
}

/// The schema of a project config file's `darkmatter` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigFormat {
    /// `{"mcpServers": {"darkmatter": {"command", "args", "env"}}}` (Cursor; Kimi's private file).
    McpServersJson,
    /// Gemini's `settings.json`: as above plus `"trust": true` (no confirmation in a headless run).
    GeminiJson,
    /// opencode's JSON: `{"mcp": {"darkmatter": {"type": "local", "command": [..], "environment": {..}, "enabled": true}}}`.
    OpencodeJson,
}

/// How the prompt reaches a spawned client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptStyle {
    /// As the last argument.
    Positional,
    /// After this flag, e.g. `-p P`.
    Flag(&'static str),
    /// On standard input.
    Stdin,
}

/// One MCP client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Profile {
    /// The `DARKMATTER_CLIENT` value.
    pub name: &'static str,
    /// The program to spawn.
    pub command: &'static str,
    /// Fixed arguments before the server's and the prompt.
    pub args: &'static [&'static str],
    /// How the prompt is passed.
    pub prompt_style: PromptStyle,
    /// Environment variables removed for the child (they would make it think it runs nested).
    pub env_remove: &'static [&'static str],
    /// How the run is given the server.
    pub delivery: Delivery,
}

/// The default when `DARKMATTER_CLIENT` is unset.
pub const DEFAULT: &str = "claude-code";

/// The seven profiles (R-C2 of the requirements; each per its vendor's documentation).
pub const PROFILES: [Profile; 7] = [
    Profile {
        name: "claude-code",
        command: "claude",
        args: &["-p", "--dangerously-skip-permissions"],
        prompt_style: PromptStyle::Positional,
        env_remove: &["CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT"],
        delivery: Delivery::InlineJson,
    },
    // Cursor has no flag for an MCP config: only the project's .cursor/mcp.json, which
    // --approve-mcps approves.
    Profile {
        name: "cursor",
        command: "cursor-agent",
        args: &["-p", "--force", "--trust", "--approve-mcps"],
        prompt_style: PromptStyle::Positional,
        env_remove: &["CURSOR_CLI", "CURSOR_AGENT"],
        delivery: Delivery::ProjectFile { path: ".cursor/mcp.json", format: ConfigFormat::McpServersJson },
    },
    // Gemini CLI's -p takes the prompt as its value, so --yolo goes first.
    Profile {
        name: "gemini",
        command: "gemini",
        args: &["--yolo"],
        prompt_style: PromptStyle::Flag("-p"),
        env_remove: &[],
        delivery: Delivery::ProjectFile { path: ".gemini/settings.json", format: ConfigFormat::GeminiJson },
    },
    Profile {
        name: "codex",
        command: "codex",
        args: &["exec", "--full-auto"],
        prompt_style: PromptStyle::Positional,
        env_remove: &[],
        delivery: Delivery::CodexOverrides,
    },
    // Kimi reads no project file; --print already approves every action.
    Profile {
        name: "kimi",
        command: "kimi",
        args: &["--print"],
        prompt_style: PromptStyle::Flag("-p"),
        env_remove: &[],
        delivery: Delivery::PrivateFile,
    },
    Profile {
        name: "opencode",
        command: "opencode",
        args: &["run"],
        prompt_style: PromptStyle::Positional,
        env_remove: &["OPENCODE"],
        delivery: Delivery::ProjectFile { path: "opencode.json", format: ConfigFormat::OpencodeJson },
    },
    // `openclaw agent` needs a session selector; --local runs it without the gateway.
    Profile {
        name: "openclaw",
        command: "openclaw",
        args: &["agent", "--local"],
        prompt_style: PromptStyle::Flag("--message"),
        env_remove: &[],
        delivery: Delivery::InPrompt,
    },
];

/// The profile named `name` (a `DARKMATTER_CLIENT` value), if it exists.
pub fn find(name: &str) -> Option<&'static Profile> {
    PROFILES.iter().find(|p| p.name == name)
}

/// The profile runtime-smol's configuration selected (it refuses unknown `DARKMATTER_CLIENT` values).
pub fn of(client: runtime_smol::config::ClientProfile) -> &'static Profile {
    find(client.name()).expect("every runtime-smol client profile has a profile here")
}

/// How to start a server: program, arguments, environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerCommand {
    /// Program (the running `darkmatter`'s absolute path).
    pub command: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Environment, sorted by name.
    pub env: Vec<(String, String)>,
}

/// What one run's command line depends on besides the prompt.
#[derive(Clone, Debug, Default)]
pub struct Invocation<'a> {
    /// The server the run is given.
    pub server: Option<&'a ServerCommand>,
    /// The private config file ([`Delivery::PrivateFile`]).
    pub private_file: Option<&'a str>,
    /// A name for the run's session (OpenClaw needs one): the message or request id.
    pub session: &'a str,
    /// The run's time limit, in seconds (OpenClaw takes it as an argument).
    pub timeout_s: u64,
    /// `DARKMATTER_AGENT_COMMAND`: the program instead of the profile's.
    pub command: Option<&'a str>,
    /// `DARKMATTER_AGENT_ARGS`: every argument before the prompt (and after it) instead of the profile's.
    pub args: Option<&'a [String]>,
}

/// A spawn: argv and what to write on the child's stdin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spawn {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Prompt text for standard input, for [`PromptStyle::Stdin`].
    pub stdin: Option<String>,
}

impl Profile {
    /// The command line that runs this client on `prompt`.
    pub fn spawn(&self, prompt: &str, run: &Invocation<'_>) -> Spawn {
        let program = run.command.unwrap_or(self.command).to_owned();
        let (before, after) = match run.args {
            Some(args) => (args.to_vec(), Vec::new()),
            None => self.fixed_args(run),
        };
        let mut argv: Vec<String> = std::iter::once(program).chain(before).collect();
        let stdin = match self.prompt_style {
            PromptStyle::Positional => {
                argv.push(prompt.to_owned());
                None
            }
            PromptStyle::Flag(flag) => {
                argv.push(flag.to_owned());
                argv.push(prompt.to_owned());
                None
            }
            PromptStyle::Stdin => Some(prompt.to_owned()),
        };
        argv.extend(after);
        Spawn { argv, stdin }
    }

    /// The profile's arguments before and after the prompt, with the server's.
    fn fixed_args(&self, run: &Invocation<'_>) -> (Vec<String>, Vec<String>) {
        let mut before: Vec<String> = self.args.iter().map(|a| (*a).to_owned()).collect();
        let mut after = Vec::new();
        match (self.delivery, run.server) {
            (Delivery::InlineJson, Some(server)) => {
                let inline = json!({"mcpServers": {"darkmatter": server_entry(server)}});
                before.extend(["--mcp-config".to_owned(), inline.to_string(), "--strict-mcp-config".to_owned()]);
            }
            (Delivery::CodexOverrides, Some(server)) => {
                for o in codex_overrides(server) {
                    before.extend(["-c".to_owned(), o]);
                }
            }
            (Delivery::PrivateFile, _) => {
                if let Some(file) = run.private_file {
                    before.extend(["--mcp-config-file".to_owned(), file.to_owned()]);
                }
            }
            (Delivery::InPrompt, _) => {
                before.extend(["--session-id".to_owned(), format!("dm-{}", run.session)]);
                after.extend(["--timeout".to_owned(), run.timeout_s.to_string(), "--json".to_owned()]);
            }
            _ => {}
        }
        (before, after)
    }

    /// The text of a config file holding only the `darkmatter` entry in `format`.
    pub fn render_config(format: ConfigFormat, server: &ServerCommand) -> String {
        let (key, entry) = config_entry(format, server);
        pretty(&json!({ key: {"darkmatter": entry} }))
    }

    /// How a client without MCP is told to run the server (OpenClaw's prompt carries it).
    pub fn skill_text(server: &ServerCommand) -> String {
        let mut line = String::new();
        for (k, v) in &server.env {
            line.push_str(&format!("{k}={} ", shell_word(v)));
        }
        line.push_str(&shell_word(&server.command));
        for a in &server.args {
            line.push(' ');
            line.push_str(&shell_word(a));
        }
        format!(
            "The DarkMatter MCP server speaks JSON-RPC (MCP) on standard input and output. Start it with:\n\n```sh\n{line}\n```\n\n\
             Then call `tools/list` and use the `darkmatter_*` tools.\n"
        )
    }
}

/// The `{"command", "args", "env"}` object of a server.
fn server_entry(server: &ServerCommand) -> Value {
    let env: Map<String, Value> = server.env.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    json!({"command": server.command, "args": server.args, "env": env})
}

/// The top-level key and the `darkmatter` entry under it, in `format`.
pub fn config_entry(format: ConfigFormat, server: &ServerCommand) -> (&'static str, Value) {
    match format {
        ConfigFormat::McpServersJson => ("mcpServers", server_entry(server)),
        ConfigFormat::GeminiJson => {
            let mut entry = server_entry(server);
            entry["trust"] = Value::Bool(true);
            ("mcpServers", entry)
        }
        ConfigFormat::OpencodeJson => {
            let env: Map<String, Value> =
                server.env.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            let mut cmd = vec![server.command.clone()];
            cmd.extend(server.args.iter().cloned());
            ("mcp", json!({"type": "local", "command": cmd, "environment": env, "enabled": true}))
        }
    }
}

/// Codex's `-c key=value` overrides (values in TOML) that define the server.
fn codex_overrides(server: &ServerCommand) -> Vec<String> {
    let mut out = vec![format!("mcp_servers.darkmatter.command={}", toml_str(&server.command))];
    let args: Vec<String> = server.args.iter().map(|a| toml_str(a)).collect();
    out.push(format!("mcp_servers.darkmatter.args=[{}]", args.join(", ")));
    for (k, v) in &server.env {
        out.push(format!("mcp_servers.darkmatter.env.{k}={}", toml_str(v)));
    }
    out
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("JSON values always serialise");
    s.push('\n');
    s
}

/// A TOML basic string (JSON string escaping is valid TOML basic-string escaping for these characters).
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A POSIX shell word: bare when safe, single-quoted otherwise.
fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
