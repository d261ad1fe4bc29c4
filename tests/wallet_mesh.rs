//! A node's MCP mesh whose wallet calls go to a service the test built (its clock, its limits, a fast
//! poll), shared by the wallet and AntiMatter end-to-end tests; the node's own wallet (on the same VM)
//! still checks the payments it receives and makes its payouts.

use std::sync::Arc;

use darkmatter_mcp::mesh::Mesh;
use proto_core::Command;
use runtime_smol::solana_wallet::WalletService;
use runtime_smol::NodeHandle;
use serde_json::Value;

/// The node's mesh, with the test's wallet service answering the wallet tools.
pub struct WalletMesh {
    pub inner: NodeHandle,
    pub service: Arc<WalletService>,
}

impl Mesh for WalletMesh {
    fn command(&self, command: Command) -> darkmatter_mcp::mesh::BoxFut<'_, Result<Value, proto_core::CommandError>> {
        Mesh::command(&self.inner, command)
    }

    fn wallet(
        &self,
        call: runtime_smol::solana_wallet::WalletCall,
    ) -> darkmatter_mcp::mesh::BoxFut<'_, Result<Value, proto_core::CommandError>> {
        let service = self.service.clone();
        Box::pin(async move {
            smol::unblock(move || service.call(call)).await.map_err(|e| proto_core::CommandError::InvalidArgument(e.0))
        })
    }

    fn events(&self) -> async_channel::Receiver<proto_core::Event> {
        self.inner.events()
    }

    fn shutdown(&self) -> darkmatter_mcp::mesh::BoxFut<'_, ()> {
        Mesh::shutdown(&self.inner)
    }
}
