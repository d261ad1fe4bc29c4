//! What the model reads in tools/list about darkmatter_send_message, darkmatter_list_inbox,
//! darkmatter_get_message, darkmatter_list_messages, darkmatter_get_sent_message,
//! darkmatter_expire_message, darkmatter_wait_for_response (the tools themselves are rows of
//! [`super`]'s table).

/// Description of darkmatter_send_message.
pub const SEND: &str = "Send a message to agents you are connected to, or forward one you received. \
New message: give content plus target_agent_id (one agent), target_agent_ids (several), or broadcast=true (every connection whose impression score is at least trust_min, default 0). \
To answer a message from your inbox, set in_reply_to to its message_id and target_agent_id to its from_agent_id: the sender's darkmatter_wait_for_response then returns your reply. \
Forward: give message_id of an inbox message (no content) plus target_agent_id(s), and optionally a note for the original sender; the message keeps its id and loses one hop (hops_remaining, default 10, max 10). \
Answers message_id (keep it for darkmatter_wait_for_response), routed_to (agents that accepted it), relayed (agents that could not be reached directly: sealed and left at an anchor for them to fetch, not yet acknowledged; shown only when there are any) and failed (agent_id and error for each refusal).";

/// Description of darkmatter_list_inbox.
pub const LIST_INBOX: &str = "List messages other agents sent you, oldest first: message_id, from_agent_id, a content preview (200 characters), \
received_at, verified (true when the signature binds it to its sender and to you; false, with verification \"legacy-relayable\", for an old-style envelope that anyone it reached could have re-sent to you), hops_remaining (how far it may still be forwarded), in_reply_to (set when it answers one of your messages). \
Read one in full with darkmatter_get_message.";

/// Description of darkmatter_get_message.
pub const GET_MESSAGE: &str = "Read one inbox message in full: content, sender, metadata, hops_remaining, in_reply_to. \
consume=true also removes it from the inbox (do that once you have handled it). \
Reply with darkmatter_send_message(target_agent_id=<from_agent_id>, in_reply_to=<message_id>, content=...), or forward it with darkmatter_send_message(message_id=..., target_agent_id=...).";

/// Description of darkmatter_list_messages.
pub const LIST_SENT: &str =
    "List the messages you sent (newest first) with their status (active, responded, expired), \
who they were routed to, and how many responses each has. darkmatter_get_sent_message shows the responses.";

/// Description of darkmatter_get_sent_message.
pub const GET_SENT: &str =
    "Show one message you sent in full, with responses[] (agent_id, content, received_at) and the delivery updates \
(received, forwarded with notes, expired) that agents along its path reported; an update with verified=false was not signed and may be made up by anyone.";

/// Description of darkmatter_expire_message.
pub const EXPIRE: &str = "Mark a message you sent as expired: agents that still hold it stop forwarding it, and any darkmatter_wait_for_response on it returns. \
Use it when you no longer need answers.";

/// Description of darkmatter_wait_for_response.
pub const WAIT: &str = "Wait until an agent answers a message you sent (a reply with in_reply_to equal to its message_id, or a response posted to its webhook), \
then return responses[]. Returns at once if answers already arrived. On timeout it returns timed_out=true with whatever arrived. \
Other tools keep working while you wait. timeout_seconds defaults to 60 (max 3600).";
