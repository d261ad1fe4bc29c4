//! The seven client profiles: each one's spawn command line and config file, in its client's format.

use darkmatter_mcp::profiles::{find, ConfigFormat, PromptStyle, ServerCommand, PROFILES};
use runtime_smol::config::ClientProfile;
use serde_json::{json, Value};

fn server() -> ServerCommand {
    ServerCommand {
        command: "darkmatter".into(),
        args: vec![],
        env: vec![("DARKMATTER_DISPLAY_NAME".into(), "my \"agent\"".into()), ("DARKMATTER_PORT".into(), "8101".into())],
    }
}

#[test]
fn there_are_seven_profiles_one_per_runtime_client() {
    assert_eq!(PROFILES.len(), 7);
    for (name, client) in ClientProfile::ALL {
        let p = darkmatter_mcp::profiles::of(client);
        assert_eq!(p.name, name);
        assert_eq!(find(name), Some(p));
    }
    assert_eq!(find("notepad"), None);
}

#[test]
fn spawn_command_lines() {
    let argv = |n: &str| find(n).unwrap().spawn("P").argv;
    assert_eq!(argv("claude-code"), ["claude", "-p", "--dangerously-skip-permissions", "P"]);
    assert_eq!(argv("cursor"), ["cursor-agent", "--print", "--force", "--trust", "--approve-mcps", "P"]);
    assert_eq!(argv("gemini"), ["gemini", "--yolo", "-p", "P"], "-p takes the prompt as its value");
    assert_eq!(argv("codex"), ["codex", "exec", "--full-auto", "P"]);
    assert_eq!(argv("kimi"), ["kimi", "--print", "--yolo", "--prompt", "P"]);
    assert_eq!(argv("opencode"), ["opencode", "run", "P"]);
    assert_eq!(argv("openclaw"), ["openclaw", "agent", "--non-interactive", "--yes", "--message", "P"]);
    for p in PROFILES {
        let s = p.spawn("hello world");
        assert_eq!(s.stdin.is_some(), p.prompt_style == PromptStyle::Stdin, "{}", p.name);
        assert!(
            s.argv.contains(&"hello world".to_owned()) || s.stdin.is_some(),
            "{}: the prompt is passed whole",
            p.name
        );
    }
}

#[test]
fn env_cleanup() {
    assert_eq!(find("claude-code").unwrap().env_remove, ["CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT"]);
    assert_eq!(find("cursor").unwrap().env_remove, ["CURSOR_CLI", "CURSOR_AGENT"]);
    assert_eq!(find("opencode").unwrap().env_remove, ["OPENCODE"]);
}

#[test]
fn mcp_servers_json_clients() {
    for (name, path) in [
        ("claude-code", ".mcp.json"),
        ("cursor", ".cursor/mcp.json"),
        ("gemini", ".gemini/settings.json"),
        ("kimi", ".mcp.json"),
    ] {
        let p = find(name).unwrap();
        assert_eq!((p.config_path, p.config_format), (path, ConfigFormat::McpServersJson), "{name}");
        let v: Value = serde_json::from_str(&p.render_config(&server())).unwrap();
        assert_eq!(
            v,
            json!({"mcpServers": {"darkmatter": {"command": "darkmatter", "args": [], "env": {"DARKMATTER_DISPLAY_NAME": "my \"agent\"", "DARKMATTER_PORT": "8101"}}}}),
            "{name}"
        );
    }
}

#[test]
fn codex_gets_toml() {
    let p = find("codex").unwrap();
    assert_eq!((p.config_path, p.config_format), (".codex/config.toml", ConfigFormat::CodexToml));
    let text = p.render_config(&server());
    assert_eq!(
        text,
        "[mcp_servers.darkmatter]\ncommand = \"darkmatter\"\nargs = []\n\n[mcp_servers.darkmatter.env]\n\"DARKMATTER_DISPLAY_NAME\" = \"my \\\"agent\\\"\"\n\"DARKMATTER_PORT\" = \"8101\"\n"
    );
    assert!(serde_json::from_str::<Value>(&text).is_err(), "not JSON in a .toml file (0.5.3's bug)");
}

#[test]
fn opencode_gets_its_own_schema() {
    let p = find("opencode").unwrap();
    assert_eq!((p.config_path, p.config_format), ("opencode.json", ConfigFormat::OpencodeJson));
    let v: Value = serde_json::from_str(&p.render_config(&server())).unwrap();
    assert_eq!(v["mcp"]["darkmatter"]["type"], "local");
    assert_eq!(v["mcp"]["darkmatter"]["command"], json!(["darkmatter"]));
    assert_eq!(v["mcp"]["darkmatter"]["environment"]["DARKMATTER_PORT"], "8101");
    assert!(v.get("mcpServers").is_none());
}

#[test]
fn openclaw_gets_a_skill_not_json() {
    let p = find("openclaw").unwrap();
    assert!(!p.native_mcp);
    assert_eq!(p.config_format, ConfigFormat::SkillMarkdown);
    assert_ne!(p.config_path, "skills/darkmatter/SKILL.md", "never overwrite the darkmatter skill (0.5.3's bug)");
    let text = p.render_config(&server());
    assert!(text.starts_with("---\nname: darkmatter-mcp\n"), "{text}");
    assert!(text.contains("DARKMATTER_DISPLAY_NAME='my \"agent\"' DARKMATTER_PORT=8101 darkmatter"), "{text}");
}
