//! The seven client profiles: each one's headless command line and how it is given the server, in
//! its client's format (R-C2 of the requirements).

use darkmatter_mcp::profiles::{
    config_entry, find, ConfigFormat, Delivery, Invocation, Profile, ServerCommand, PROFILES,
};
use runtime_smol::config::ClientProfile;
use serde_json::{json, Value};

fn server() -> ServerCommand {
    ServerCommand {
        command: "/usr/bin/darkmatter".into(),
        args: vec![],
        env: vec![
            ("DARKMATTER_AGENT_ENABLED".into(), "false".into()),
            ("DARKMATTER_ATTACH_SOCKET".into(), "/tmp/dm/s.sock".into()),
            ("DARKMATTER_SPAWN_TOKEN".into(), "00ff".into()),
        ],
    }
}

fn run(server: &ServerCommand) -> Invocation<'_> {
    Invocation {
        server: Some(server),
        private_file: Some("/tmp/dm/mcp.json"),
        session: "m-1",
        timeout_s: 300,
        ..Invocation::default()
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
fn headless_command_lines() {
    let s = server();
    let argv = |n: &str| find(n).unwrap().spawn("P", &run(&s)).argv;
    let inline = r#"{"mcpServers":{"darkmatter":{"args":[],"command":"/usr/bin/darkmatter","env":{"DARKMATTER_AGENT_ENABLED":"false","DARKMATTER_ATTACH_SOCKET":"/tmp/dm/s.sock","DARKMATTER_SPAWN_TOKEN":"00ff"}}}}"#;
    assert_eq!(
        argv("claude-code"),
        ["claude", "-p", "--dangerously-skip-permissions", "--mcp-config", inline, "--strict-mcp-config", "P"]
    );
    assert_eq!(argv("cursor"), ["cursor-agent", "-p", "--force", "--trust", "--approve-mcps", "P"]);
    assert_eq!(argv("gemini"), ["gemini", "--yolo", "-p", "P"], "-p takes the prompt as its value");
    assert_eq!(
        argv("codex"),
        [
            "codex",
            "exec",
            "--full-auto",
            "-c",
            "mcp_servers.darkmatter.command=\"/usr/bin/darkmatter\"",
            "-c",
            "mcp_servers.darkmatter.args=[]",
            "-c",
            "mcp_servers.darkmatter.env.DARKMATTER_AGENT_ENABLED=\"false\"",
            "-c",
            "mcp_servers.darkmatter.env.DARKMATTER_ATTACH_SOCKET=\"/tmp/dm/s.sock\"",
            "-c",
            "mcp_servers.darkmatter.env.DARKMATTER_SPAWN_TOKEN=\"00ff\"",
            "P"
        ]
    );
    assert_eq!(argv("kimi"), ["kimi", "--print", "--mcp-config-file", "/tmp/dm/mcp.json", "-p", "P"]);
    assert_eq!(argv("opencode"), ["opencode", "run", "P"]);
    assert_eq!(
        argv("openclaw"),
        ["openclaw", "agent", "--local", "--session-id", "dm-m-1", "--message", "P", "--timeout", "300", "--json"]
    );
}

#[test]
fn overrides_replace_the_program_and_every_fixed_argument() {
    let s = server();
    let args = vec!["a".to_owned(), "b".to_owned()];
    let r = Invocation { command: Some("my-claude"), args: Some(&args), ..run(&s) };
    assert_eq!(find("claude-code").unwrap().spawn("P", &r).argv, ["my-claude", "a", "b", "P"]);
    assert_eq!(find("gemini").unwrap().spawn("P", &r).argv, ["my-claude", "a", "b", "-p", "P"]);
    assert_eq!(find("openclaw").unwrap().spawn("P", &r).argv, ["my-claude", "a", "b", "--message", "P"]);
}

#[test]
fn the_prompt_is_passed_whole() {
    let s = server();
    for p in PROFILES {
        let spawn = p.spawn("hello world", &run(&s));
        assert!(spawn.argv.contains(&"hello world".to_owned()), "{}", p.name);
        assert_eq!(spawn.stdin, None);
    }
}

#[test]
fn env_cleanup() {
    assert_eq!(find("claude-code").unwrap().env_remove, ["CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT"]);
    assert_eq!(find("cursor").unwrap().env_remove, ["CURSOR_CLI", "CURSOR_AGENT"]);
    assert_eq!(find("opencode").unwrap().env_remove, ["OPENCODE"]);
}

#[test]
fn only_cursor_gemini_and_opencode_need_a_project_file() {
    let files: Vec<(&str, &str)> = PROFILES
        .iter()
        .filter_map(|p| match p.delivery {
            Delivery::ProjectFile { path, .. } => Some((p.name, path)),
            _ => None,
        })
        .collect();
    assert_eq!(
        files,
        [("cursor", ".cursor/mcp.json"), ("gemini", ".gemini/settings.json"), ("opencode", "opencode.json")]
    );
}

#[test]
fn entries_in_each_clients_schema() {
    let env = json!({"DARKMATTER_AGENT_ENABLED": "false", "DARKMATTER_ATTACH_SOCKET": "/tmp/dm/s.sock", "DARKMATTER_SPAWN_TOKEN": "00ff"});
    assert_eq!(
        config_entry(ConfigFormat::McpServersJson, &server()),
        ("mcpServers", json!({"command": "/usr/bin/darkmatter", "args": [], "env": env}))
    );
    let (key, gemini) = config_entry(ConfigFormat::GeminiJson, &server());
    assert_eq!((key, &gemini["trust"]), ("mcpServers", &json!(true)));
    let (key, oc) = config_entry(ConfigFormat::OpencodeJson, &server());
    assert_eq!(key, "mcp");
    assert_eq!(oc, json!({"type": "local", "command": ["/usr/bin/darkmatter"], "environment": env, "enabled": true}));
    let file: Value = serde_json::from_str(&Profile::render_config(ConfigFormat::OpencodeJson, &server())).unwrap();
    assert!(file.get("mcpServers").is_none(), "opencode's schema has no mcpServers");
}

#[test]
fn openclaw_is_told_how_to_run_the_server() {
    let text = Profile::skill_text(&server());
    assert!(
        text.contains("DARKMATTER_AGENT_ENABLED=false DARKMATTER_ATTACH_SOCKET=/tmp/dm/s.sock DARKMATTER_SPAWN_TOKEN=00ff /usr/bin/darkmatter"),
        "{text}"
    );
}

/// Every profile's command line, one per line, as a reviewable snapshot (T-C1).
#[test]
fn command_lines_snapshot() {
    let s = server();
    let text: String =
        PROFILES.iter().map(|p| format!("{:<12} {}\n", p.name, p.spawn("<PROMPT>", &run(&s)).argv.join(" "))).collect();
    insta::assert_snapshot!(text);
}
