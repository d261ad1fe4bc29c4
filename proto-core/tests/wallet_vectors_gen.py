# Extra transaction vectors for tests/wallet_vectors.rs (memo, idempotent creation, legacy messages), beside
# the reference ones of solana-vectors-gen.py; run with solders 0.29.0 (the interop venv of tests/python.rs).
import hashlib, struct
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.hash import Hash
from solders.system_program import transfer, TransferParams
from solders.message import MessageV0, Message
from solders.transaction import VersionedTransaction, Transaction
from solders.instruction import Instruction, AccountMeta
def derive(seed): return Keypair.from_seed(hashlib.sha256(seed+b"darkmatter-solana-v1").digest())
A=derive(bytes([0x1f]*32)); B=derive(bytes([0x2a]*32))
bh=Hash(bytes([7]*32))
TOKEN=Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
ATAP=Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
SYS=Pubkey.from_string("11111111111111111111111111111111")
MEMO=Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
USDC=Pubkey.from_string("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v")
def ata(owner,mint): return Pubkey.find_program_address([bytes(owner),bytes(TOKEN),bytes(mint)],ATAP)[0]
a_ata=ata(A.pubkey(),USDC); b_ata=ata(B.pubkey(),USDC)
memo=Instruction(MEMO,b"dm:msg-1",[])
# SOL + memo, v0
ix=transfer(TransferParams(from_pubkey=A.pubkey(), to_pubkey=B.pubkey(), lamports=1_000_000))
m=MessageV0.try_compile(payer=A.pubkey(), instructions=[ix,memo], address_lookup_table_accounts=[], recent_blockhash=bh)
print("sol_memo_v0", bytes(VersionedTransaction(m,[A])).hex())
# SOL legacy
lm=Message.new_with_blockhash([ix], A.pubkey(), bh)
print("sol_legacy", bytes(Transaction([A], lm, bh)).hex())
# SPL idempotent + memo, v0
create=Instruction(ATAP,bytes([1]),[AccountMeta(A.pubkey(),True,True),AccountMeta(b_ata,False,True),AccountMeta(B.pubkey(),False,False),AccountMeta(USDC,False,False),AccountMeta(SYS,False,False),AccountMeta(TOKEN,False,False)])
tc=Instruction(TOKEN,struct.pack("<BQB",12,1_500_000,6),[AccountMeta(a_ata,False,True),AccountMeta(USDC,False,False),AccountMeta(b_ata,False,True),AccountMeta(A.pubkey(),True,False)])
m2=MessageV0.try_compile(payer=A.pubkey(), instructions=[create,tc,memo], address_lookup_table_accounts=[], recent_blockhash=bh)
print("spl_idem_memo_v0", bytes(VersionedTransaction(m2,[A])).hex())
# SPL without creation, legacy
lm2=Message.new_with_blockhash([tc], A.pubkey(), bh)
print("spl_nocreate_legacy", bytes(Transaction([A], lm2, bh)).hex())
