//! # darkmatter (MCP server)
//!
//! The `darkmatter` binary an MCP client starts (`"command": "darkmatter"`, configured by
//! `DARKMATTER_*` variables): one process that runs the mesh node (runtime-smol, on smol) and an MCP
//! stdio server (rmcp, on a current-thread tokio runtime of its own thread), bridged by
//! async-channel.
//!
//! Layout: [`tools`] (the 28 tools, each defined once: name, description, typed arguments from
//! runtime-smol's `args`, its call) → [`mesh`] (the node's client trait, implemented by the
//! in-process node handle that [`node`] starts and by the [`attach`] client); [`present`] adds what
//! a model reads to the node's typed results (advice naming tools, previews); [`server`] is the
//! rmcp handler around them, [`bridge`] pairs a client with its event fan-out. [`events`] turns
//! node events into notifications, [`attach`] lets a second process of the same project share the node,
//! [`profiles`] describes the seven MCP clients, [`instructions`] is what the model reads first,
//! and [`app`] wires it all for `main`.
//! [`wormhole`] is `darkmatter wormhole`: a node of its own with a web page for a person.

#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

pub mod app;
pub mod attach;
pub mod bridge;
pub mod config_merge;
pub mod events;
pub mod instructions;
pub mod mesh;
pub mod node;
pub mod present;
pub mod profiles;
pub mod server;
pub mod spawn_prompt;
pub mod spawned;
pub mod spawner;
pub mod tools;
pub mod wormhole;
