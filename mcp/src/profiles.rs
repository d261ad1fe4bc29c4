//! Client profiles (`DARKMATTER_CLIENT`): for each supported MCP client, how to spawn it on a
//! prompt and how to give it this server. Pure data plus renderers; spawning uses them later.
//!
//! 0.5.3 wrote JSON into every client's config file whatever its format; here each profile writes
//! the format and schema its client reads (TOML for Codex, opencode's own `mcp` schema, and a skill
//! file for OpenClaw, which has no native MCP support).

use serde_json::{json, Map, Value};

/// How a profile's config file is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigFormat {
    /// `{"mcpServers": {"darkmatter": {"command", "args", "env"}}}` (Claude Code, Cursor, Gemini, Kimi).
    McpServersJson,
    /// Codex's TOML: `[mcp_servers.darkmatter]` with `command`, `args`, `env`.
    CodexToml,
    /// opencode's JSON: `{"mcp": {"darkmatter": {"type": "local", "command": [..], "environment": {..}}}}`.
    OpencodeJson,
    /// A skill document telling the agent how to run the server (OpenClaw has no MCP client).
    SkillMarkdown,
}

/// How the prompt reaches a spawned client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptStyle {
    /// As the last argument.
    Positional,
    /// After this flag, e.g. `--prompt P`.
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
    /// Arguments before the prompt.
    pub args: &'static [&'static str],
    /// How the prompt is passed.
    pub prompt_style: PromptStyle,
    /// Environment variables removed for the child (they would make it think it runs nested).
    pub env_remove: &'static [&'static str],
    /// Config file, relative to the project directory.
    pub config_path: &'static str,
    /// Its format.
    pub config_format: ConfigFormat,
    /// Whether the client speaks MCP over stdio itself.
    pub native_mcp: bool,
}

/// The default when `DARKMATTER_CLIENT` is unset.
pub const DEFAULT: &str = "claude-code";

/// The seven profiles.
pub const PROFILES: [Profile; 7] = [
    Profile {
        name: "claude-code",
        command: "claude",
        args: &["-p", "--dangerously-skip-permissions"],
        prompt_style: PromptStyle::Positional,
        env_remove: &["CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT"],
        config_path: ".mcp.json",
        config_format: ConfigFormat::McpServersJson,
        native_mcp: true,
    },
    Profile {
        name: "cursor",
        command: "cursor-agent",
        args: &["--print", "--force", "--trust", "--approve-mcps"],
        prompt_style: PromptStyle::Positional,
        env_remove: &["CURSOR_CLI", "CURSOR_AGENT"],
        config_path: ".cursor/mcp.json",
        config_format: ConfigFormat::McpServersJson,
        native_mcp: true,
    },
    // Gemini CLI's -p takes the prompt as its value, so --yolo goes first.
    Profile {
        name: "gemini",
        command: "gemini",
        args: &["--yolo"],
        prompt_style: PromptStyle::Flag("-p"),
        env_remove: &[],
        config_path: ".gemini/settings.json",
        config_format: ConfigFormat::McpServersJson,
        native_mcp: true,
    },
    Profile {
        name: "codex",
        command: "codex",
        args: &["exec", "--full-auto"],
        prompt_style: PromptStyle::Positional,
        env_remove: &[],
        config_path: ".codex/config.toml",
        config_format: ConfigFormat::CodexToml,
        native_mcp: true,
    },
    Profile {
        name: "kimi",
        command: "kimi",
        args: &["--print", "--yolo"],
        prompt_style: PromptStyle::Flag("--prompt"),
        env_remove: &[],
        config_path: ".mcp.json",
        config_format: ConfigFormat::McpServersJson,
        native_mcp: true,
    },
    Profile {
        name: "opencode",
        command: "opencode",
        args: &["run"],
        prompt_style: PromptStyle::Positional,
        env_remove: &["OPENCODE"],
        config_path: "opencode.json",
        config_format: ConfigFormat::OpencodeJson,
        native_mcp: true,
    },
    Profile {
        name: "openclaw",
        command: "openclaw",
        args: &["agent", "--non-interactive", "--yes"],
        prompt_style: PromptStyle::Flag("--message"),
        env_remove: &[],
        config_path: "skills/darkmatter-mcp/SKILL.md",
        config_format: ConfigFormat::SkillMarkdown,
        native_mcp: false,
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
    /// Program (e.g. `darkmatter`).
    pub command: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Environment, sorted by name.
    pub env: Vec<(String, String)>,
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
    pub fn spawn(&self, prompt: &str) -> Spawn {
        let mut argv: Vec<String> =
            std::iter::once(self.command).chain(self.args.iter().copied()).map(str::to_owned).collect();
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
        Spawn { argv, stdin }
    }

    /// The text of this client's config file that makes it start `server` as the `darkmatter` MCP server.
    pub fn render_config(&self, server: &ServerCommand) -> String {
        let env: Map<String, Value> = server.env.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        match self.config_format {
            ConfigFormat::McpServersJson => pretty(
                &json!({"mcpServers": {"darkmatter": {"command": server.command, "args": server.args, "env": env}}}),
            ),
            ConfigFormat::OpencodeJson => {
                let mut cmd = vec![server.command.clone()];
                cmd.extend(server.args.iter().cloned());
                pretty(
                    &json!({"$schema": "https://opencode.ai/config.json", "mcp": {"darkmatter": {"type": "local", "command": cmd, "enabled": true, "environment": env}}}),
                )
            }
            ConfigFormat::CodexToml => {
                let mut out = String::from("[mcp_servers.darkmatter]\n");
                out.push_str(&format!("command = {}\n", toml_str(&server.command)));
                let args: Vec<String> = server.args.iter().map(|a| toml_str(a)).collect();
                out.push_str(&format!("args = [{}]\n", args.join(", ")));
                if !server.env.is_empty() {
                    out.push_str("\n[mcp_servers.darkmatter.env]\n");
                    for (k, v) in &server.env {
                        out.push_str(&format!("{} = {}\n", toml_str(k), toml_str(v)));
                    }
                }
                out
            }
            ConfigFormat::SkillMarkdown => {
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
                    "---\nname: darkmatter-mcp\ndescription: Talk to the DarkMatter mesh through its MCP server.\n---\n\n\
                     The DarkMatter MCP server speaks JSON-RPC (MCP) on standard input and output. Start it with:\n\n```sh\n{line}\n```\n\n\
                     Then call `tools/list` and use the `darkmatter_*` tools; start with `darkmatter_status`.\n"
                )
            }
        }
    }
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
