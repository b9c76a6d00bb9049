//! The trait through which a vendor adds its own content to its sessions' notes. Each
//! source implements [`VendorNotes`] in its own module; the vendor-neutral rendering, a stage
//! above (the pipeline), hands the session's vendor in, so rendering never looks a vendor up
//! by name.

use crate::note::{Attachment, Field, Link};
use crate::store::sessions::StoredSession;

/// Vendor content for a session's note beyond the normalized columns: extra fields, a
/// body section (e.g. a file-transfer table, a participant list) and attachments (e.g. a
/// chat transcript).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NoteExtras {
    pub fields: Vec<Field>,
    pub body: Option<String>,
    pub attachments: Vec<Attachment>,
}

/// What a vendor contributes to its sessions' notes. The one hook every vendor fills in
/// for its notes, from the stored session (its raw record included).
pub trait VendorNotes: Send + Sync {
    /// The vendor name its sessions are stored under (`sessions.vendor`).
    fn vendor(&self) -> &'static str;
    /// Human name of the vendor, for note titles.
    fn display_name(&self) -> &'static str;
    /// Vendor links worth putting on a note (reconnect to the device, the vendor's report).
    fn links(&self, _s: &StoredSession) -> Vec<Link> {
        Vec::new()
    }
    /// Extra fields, body and attachments, read from the stored raw record.
    fn extras(&self, _s: &StoredSession) -> NoteExtras {
        NoteExtras::default()
    }
}
