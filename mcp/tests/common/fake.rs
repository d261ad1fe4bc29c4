//! A fake node: records the commands it gets, answers `{"ok": true}`, holds waits until released,
//! and emits the events a test pushes.

#![allow(dead_code)] // each test file uses a different part

use std::sync::Mutex;

use darkmatter_mcp::mesh::{BoxFut, Mesh};
use proto_core::{Command, CommandError, Event};
use serde_json::{json, Value};

pub struct Fake {
    pub log: Mutex<Vec<Command>>,
    pub events_tx: async_channel::Sender<Event>,
    events_rx: async_channel::Receiver<Event>,
    release_tx: async_channel::Sender<()>,
    release_rx: async_channel::Receiver<()>,
}

impl Fake {
    pub fn new() -> Self {
        let (events_tx, events_rx) = async_channel::unbounded();
        let (release_tx, release_rx) = async_channel::unbounded();
        Fake { log: Mutex::new(Vec::new()), events_tx, events_rx, release_tx, release_rx }
    }

    /// Lets one pending `WaitForResponse` finish.
    pub fn release(&self) {
        self.release_tx.try_send(()).unwrap();
    }

    pub fn last(&self) -> Option<Command> {
        self.log.lock().unwrap().last().cloned()
    }
}

impl Mesh for Fake {
    fn command(&self, command: Command) -> BoxFut<'_, Result<Value, CommandError>> {
        self.log.lock().unwrap().push(command.clone());
        Box::pin(async move {
            match command {
                Command::WaitForResponse { message_id, .. } => {
                    let _ = self.release_rx.recv().await;
                    Ok(
                        json!({"message_id": message_id, "timed_out": false, "responses": [{"agent_id": "b", "content": "hi", "received_at": "t"}]}),
                    )
                }
                Command::GetMessage { message_id, .. } if message_id == "missing" => {
                    Err(CommandError::NotFound("No inbox message with ID 'missing'".into()))
                }
                _ => Ok(json!({"ok": true})),
            }
        })
    }

    fn discover_local(&self) -> BoxFut<'_, Result<Value, CommandError>> {
        Box::pin(async { Ok(json!({"discovered": []})) })
    }

    fn discover_domain(&self, domain: String) -> BoxFut<'_, Result<Value, CommandError>> {
        Box::pin(async move { Ok(json!({"found": true, "domain": domain})) })
    }

    fn events(&self) -> async_channel::Receiver<Event> {
        self.events_rx.clone()
    }

    fn shutdown(&self) -> BoxFut<'_, ()> {
        Box::pin(async {})
    }
}
