//! Zoom REST wire types (`/v2`), as in vendor-apis part B. Unknown fields are ignored.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const VENDOR: &str = "zoom";

/// `{"code": 124, "message": "Invalid access token."}`
#[derive(Debug, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default)]
    pub message: String,
}

/// `POST /users/{userId}/meetings` → 201.
#[derive(Debug, Clone, Deserialize)]
pub struct CreatedMeeting {
    pub id: i64,
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub start_time: Option<String>,
    pub join_url: String,
    pub start_url: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub host_email: Option<String>,
}

/// `GET /past_meetings/{meetingId}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PastMeeting {
    pub uuid: String,
    pub id: i64,
    #[serde(default)]
    pub host_id: Option<String>,
    #[serde(default)]
    pub topic: Option<String>,
    pub start_time: String,
    pub end_time: String,
    #[serde(default)]
    pub duration: Option<i64>,
    #[serde(default)]
    pub user_name: Option<String>,
    #[serde(default)]
    pub user_email: Option<String>,
    #[serde(default)]
    pub participants_count: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Participant {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub user_email: Option<String>,
    pub join_time: String,
    #[serde(default)]
    pub leave_time: Option<String>,
    #[serde(default)]
    pub duration: Option<i64>,
}

/// Any paged list: the items sit under a key that depends on the endpoint.
#[derive(Debug, Deserialize)]
pub struct Page {
    #[serde(default)]
    pub next_page_token: Option<String>,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordingFile {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub file_type: Option<String>,
    #[serde(default)]
    pub file_extension: Option<String>,
    #[serde(default)]
    pub file_size: Option<i64>,
    #[serde(default)]
    pub play_url: Option<String>,
    #[serde(default)]
    pub download_url: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub recording_type: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordingMeeting {
    pub uuid: String,
    #[serde(default)]
    pub id: Option<i64>,
    #[serde(default)]
    pub share_url: Option<String>,
    #[serde(default)]
    pub total_size: Option<i64>,
    #[serde(default)]
    pub recording_files: Vec<RecordingFile>,
}

impl RecordingMeeting {
    /// Zoom lists files while they are still processing; only completed ones are final.
    pub fn complete(&self) -> bool {
        !self.recording_files.is_empty()
            && self.recording_files.iter().all(|f| f.status.as_deref().is_none_or(|s| s == "completed"))
    }
}

/// What a Zoom session row keeps as `raw_json`: the vendor's records as received.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeetingRecord {
    pub account: String,
    pub meeting: PastMeeting,
    pub participants: Vec<Participant>,
    pub recordings: Option<RecordingMeeting>,
    /// `pending` (waiting for recordings), `complete` or `deadline_passed`.
    pub recording_status: String,
}

/// A meeting UUID as a path segment: UUIDs starting with `/` or containing `//` must be
/// encoded twice (Zoom decodes once before routing).
pub fn uuid_segment(uuid: &str) -> String {
    let once = urlencoding_encode(uuid);
    if uuid.starts_with('/') || uuid.contains("//") {
        urlencoding_encode(&once)
    } else {
        once
    }
}

fn urlencoding_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_with_slashes_are_double_encoded() {
        assert_eq!(uuid_segment("aDYlohsHRtCd4ii1uC2+hA=="), "aDYlohsHRtCd4ii1uC2%2BhA%3D%3D");
        assert_eq!(uuid_segment("/ajXp112QmuoKj4854875=="), "%252FajXp112QmuoKj4854875%253D%253D");
        assert_eq!(uuid_segment("ab//cd=="), "ab%252F%252Fcd%253D%253D");
    }
}
