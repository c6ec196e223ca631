//! moto's `ListSnapshotBlocks` answer, mended for the SDK: moto 5.2 sends each `BlockIndex`
//! as a JSON string (`"BlockIndex": "0"`, its dictionary key) where AWS sends a number, and
//! the SDK's JSON reader refuses a string for an integer. Used only with an endpoint override
//! (an emulator, `AwsClients::from_conf`): against AWS the answers reach the SDK untouched.
//!
//! Only a string holding a decimal integer is turned into that number; anything else is left
//! as it is, for the SDK and `image::Listing` to refuse (docs/emulator-notes.md).

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use serde_json::Value;

/// An HTTP client that mends `ListSnapshotBlocks` answers (see the module docs).
#[derive(Clone, Debug)]
pub struct MotoListingClient {
    inner: SharedHttpClient,
}

impl MotoListingClient {
    /// Wraps `inner`.
    pub fn new(inner: SharedHttpClient) -> MotoListingClient {
        MotoListingClient { inner }
    }
}

#[derive(Clone, Debug)]
struct MotoListingConnector {
    inner: SharedHttpConnector,
}

/// `GET /snapshots/ID/blocks`: a `ListSnapshotBlocks` request.
fn is_listing(request: &HttpRequest) -> bool {
    request.method() == "GET"
        && request
            .uri()
            .split('?')
            .next()
            .is_some_and(|p| p.ends_with("/blocks"))
}

/// The body with every `Blocks[].BlockIndex` that is a decimal string made a number; `None`
/// when nothing needed mending (or the body is not JSON: left for the SDK to refuse).
pub fn mend(body: &[u8]) -> Option<Vec<u8>> {
    let mut doc: Value = serde_json::from_slice(body).ok()?;
    let mut mended = false;
    for b in doc.get_mut("Blocks")?.as_array_mut()? {
        let Some(idx) = b.get_mut("BlockIndex") else {
            continue;
        };
        if let Some(n) = idx.as_str().and_then(|s| s.parse::<i64>().ok()) {
            *idx = Value::from(n);
            mended = true;
        }
    }
    mended.then(|| serde_json::to_vec(&doc).ok()).flatten()
}

impl HttpConnector for MotoListingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let listing = is_listing(&request);
        let inner = self.inner.clone();
        HttpConnectorFuture::new(async move {
            let mut response = inner.call(request).await?;
            if !listing || !response.status().is_success() {
                return Ok(response);
            }
            let body = ByteStream::new(response.take_body())
                .collect()
                .await
                .map_err(|e| {
                    aws_smithy_runtime_api::client::result::ConnectorError::io(Box::new(e))
                })?
                .into_bytes();
            let body = mend(&body).map(bytes::Bytes::from).unwrap_or(body);
            response
                .headers_mut()
                .insert("content-length", body.len().to_string());
            *response.body_mut() = SdkBody::from(body);
            Ok(response)
        })
    }
}

impl HttpClient for MotoListingClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(MotoListingConnector {
            inner: self.inner.http_connector(settings, components),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_indexes_become_numbers_and_nothing_else_changes() {
        let moto = br#"{"Blocks": [{"BlockIndex": "0", "BlockToken": "a"}, {"BlockIndex": "7", "BlockToken": "b"}], "VolumeSize": 1, "BlockSize": 512}"#;
        let v: Value = serde_json::from_slice(&mend(moto).unwrap()).unwrap();
        assert_eq!(v["Blocks"][1]["BlockIndex"], 7);
        assert_eq!(v["Blocks"][1]["BlockToken"], "b");
        assert_eq!(v["BlockSize"], 512);
        // AWS's own answer, and one that is not a number, are left alone.
        assert_eq!(mend(br#"{"Blocks": [{"BlockIndex": 3}]}"#), None);
        assert_eq!(mend(br#"{"Blocks": [{"BlockIndex": "x"}]}"#), None);
        assert_eq!(mend(b"not json"), None);
    }
}
