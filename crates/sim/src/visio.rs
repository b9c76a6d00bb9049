//! A visioconference.me enterprise API simulator (vendor-apis part C): `POST
//! /api/v1/entreprise/visio` with `X-Token`, answering in the current shape
//! (`data.moderator_token`) or the older one (`data.room.moderator_token`).

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VisioShape {
    /// 2021-03-09 and later: `data.moderator_token`.
    Current,
    /// 2021-03-08: `data.room.moderator_token`.
    Room,
}

struct Inner {
    token: String,
    shape: Mutex<VisioShape>,
    rooms: Mutex<Vec<Value>>,
}

pub struct VisioSim {
    /// `api_url` for the configuration (`…/api/v1`).
    pub api_url: String,
    inner: Arc<Inner>,
    server: crate::Served,
}

impl VisioSim {
    pub async fn start(token: &str, shape: VisioShape) -> std::io::Result<VisioSim> {
        let inner = Arc::new(Inner { token: token.into(), shape: Mutex::new(shape), rooms: Mutex::new(vec![]) });
        let app = Router::new().route("/api/v1/entreprise/visio", post(create)).with_state(inner.clone());
        let (server, url) = crate::Served::start(app).await?;
        Ok(VisioSim { api_url: format!("{url}/api/v1"), inner, server })
    }

    pub fn set_shape(&self, s: VisioShape) {
        *self.inner.shape.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }

    /// Each created room: the request body plus `uniqid` and `moderator_token`.
    pub fn rooms(&self) -> Vec<Value> {
        self.inner.rooms.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops the server (dropping it does the same).
    pub fn shutdown(self) {
        drop(self.server);
    }
}

fn code(n: usize) -> String {
    use rand::Rng;
    let mut r = rand::rng();
    (0..n).map(|_| (b'A' + r.random_range(0..26u8)) as char).collect()
}

async fn create(State(inner): State<Arc<Inner>>, h: HeaderMap, body: axum::body::Bytes) -> Response {
    if h.get("x-token").and_then(|v| v.to_str().ok()) != Some(inner.token.as_str()) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"code": 401, "data": null, "message": "Invalid token"})))
            .into_response();
    }
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            return (StatusCode::BAD_REQUEST, Json(json!({"code": 400, "data": null, "message": "Invalid JSON"})))
                .into_response()
        }
    };
    let Some(name) = req["name"].as_str().filter(|n| !n.is_empty()) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"code": 400, "data": null, "message": "name is required"})))
            .into_response();
    };
    let uniqid = code(8);
    let moderator = code(8);
    let url = format!("https://visioconference.me/meet/{uniqid}");
    let iframe = format!(
        "<iframe allow='camera; microphone; fullscreen; display-capture' src='{url}' style='height: 100%; width: 100%; border: 0px;'/>"
    );
    let shape = *inner.shape.lock().unwrap_or_else(|e| e.into_inner());
    let data = match shape {
        VisioShape::Current => json!({"iframe": iframe, "uniqid": uniqid, "url": url, "moderator_token": moderator}),
        VisioShape::Room => {
            let now = chrono::Utc::now().to_rfc3339();
            json!({"iframe": iframe, "uniqid": uniqid, "url": url, "room": {
                "id": code(22), "id_team": code(22), "id_user": code(22), "name": name, "slot": 100,
                "uniquename": uniqid, "template": "meet", "moderator_token": moderator, "password_token": code(8),
                "updatedAt": now, "createdAt": now }})
        }
    };
    let mut rec = req.clone();
    rec["uniqid"] = json!(uniqid);
    rec["moderator_token"] = json!(moderator);
    inner.rooms.lock().unwrap_or_else(|e| e.into_inner()).push(rec);
    (StatusCode::CREATED, Json(json!({"code": 201, "data": data, "message": ""}))).into_response()
}
