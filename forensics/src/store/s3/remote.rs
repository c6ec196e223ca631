//! Uploads made by someone else: irr starts a multipart upload of one evidence object, with the
//! store's Object Lock retention and encryption, and hands out presigned `UploadPart` URLs for
//! exactly that object and those part numbers (an instance's SSM agent streams its memory image
//! through them: no credentials ever leave irr). irr then completes the upload from what S3
//! holds (`ListParts`), confirms the retention, and re-reads the object to hash it itself: what
//! the uploader says about its bytes is never taken for their hash.
//!
//! Each part request must carry `Content-MD5` (computed by the uploader from the part it
//! buffered, unsigned: a standard header, so S3 accepts it beside a presigned query string);
//! S3 checks it on receipt, and it is the per-request checksum S3 requires for a request on an
//! object under Object Lock retention. The upload is started without a `ChecksumAlgorithm`, so
//! no `x-amz-checksum-*` header, which would have to be signed, is asked of the uploader.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::presigning::PresigningConfig;

use super::*;

/// A multipart upload of one evidence object that another party writes the parts of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteUpload {
    /// The store key (relative to the store's root, like every key of [`crate::Store`]).
    pub key: String,
    /// S3's upload id.
    pub upload_id: String,
}

/// One presigned `UploadPart` request: a bearer credential for that part until it expires
/// (never log or store it).
#[derive(Clone, PartialEq, Eq)]
pub struct PresignedPart {
    /// The part number (1-based).
    pub part_number: i32,
    /// The presigned URL (method PUT).
    pub url: String,
    /// Headers that were signed and must be sent as they are (e.g.
    /// `x-amz-expected-bucket-owner`), `host` excepted.
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for PresignedPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresignedPart")
            .field("part_number", &self.part_number)
            .field("url", &"[presigned]")
            .finish_non_exhaustive()
    }
}

/// What a completed remote upload holds, as irr read it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteObject {
    /// The object, hashed by irr streaming it back from S3.
    pub stored: StoredObject,
    /// Parts it was assembled from.
    pub parts: usize,
}

impl S3Store {
    /// Starts a multipart upload at `key` with the store's retention and encryption (no
    /// checksum algorithm: the parts carry `Content-MD5`).
    pub async fn start_remote_upload(&self, key: &str) -> Result<RemoteUpload> {
        let upload_id = self.create_upload(key, &self.full_key(key), None).await?;
        Ok(RemoteUpload {
            key: key.to_string(),
            upload_id,
        })
    }

    /// Presigned `UploadPart` requests for parts `1..=parts` of `upload`, all signed at `start`
    /// and valid for `expires` (at most 7 days; with temporary credentials, no longer than
    /// they are). The expected bucket owner, when the store has one, is a signed header: the
    /// upload goes to the evidence bucket of that account or nowhere.
    pub async fn presign_parts(
        &self,
        upload: &RemoteUpload,
        parts: i32,
        start: SystemTime,
        expires: Duration,
    ) -> Result<Vec<PresignedPart>> {
        let bad = |reason: String| Error::S3 {
            operation: "UploadPart",
            target: self.target(&upload.key),
            code: "presign".into(),
            message: reason,
            request_id: None,
        };
        if !(1..=MAX_PARTS as i32).contains(&parts) {
            return Err(bad(format!("{parts} parts: S3 allows 1 to {MAX_PARTS}")));
        }
        let config = PresigningConfig::builder()
            .start_time(start)
            .expires_in(expires)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let mut out = Vec::with_capacity(parts as usize);
        for n in 1..=parts {
            let req = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .set_expected_bucket_owner(self.owner())
                .key(self.full_key(&upload.key))
                .upload_id(&upload.upload_id)
                .part_number(n)
                .presigned(config.clone())
                .await
                .map_err(|e| {
                    bad(crate::awserr::one_line(
                        &DisplayErrorContext(&e).to_string(),
                    ))
                })?;
            out.push(PresignedPart {
                part_number: n,
                url: req.uri().to_string(),
                headers: req
                    .headers()
                    .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                    .collect(),
            });
        }
        Ok(out)
    }

    /// The parts S3 holds for `upload` (every page), in part order.
    async fn list_remote_parts(&self, upload: &RemoteUpload) -> Result<Vec<(i32, String, u64)>> {
        let full = self.full_key(&upload.key);
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .set_expected_bucket_owner(self.owner())
                .key(&full)
                .upload_id(&upload.upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await;
            let (got, truncated, next) = match page {
                Ok(page) => (
                    page.parts()
                        .iter()
                        .map(|p| {
                            (
                                p.part_number().unwrap_or(0),
                                p.e_tag().unwrap_or_default().to_string(),
                                p.size().unwrap_or(0).max(0) as u64,
                            )
                        })
                        .collect(),
                    page.is_truncated() == Some(true),
                    page.next_part_number_marker().map(str::to_string),
                ),
                // moto 5.2.1 names the root `ListPartsResponse` (AWS: `ListPartsResult`), which
                // the SDK cannot parse: the same document is read here. AWS never takes this.
                Err(e) if unparsed_success(&e).is_some() => {
                    let raw = unparsed_success(&e).expect("checked");
                    let body = raw.body().bytes().unwrap_or_default();
                    parse_list_parts(&String::from_utf8_lossy(body))
                }
                Err(e) => return Err(self.fail("ListParts", self.target(&upload.key), e)),
            };
            parts.extend(got);
            match next {
                Some(m) if truncated && marker.as_deref() != Some(m.as_str()) => marker = Some(m),
                _ => break,
            }
            if parts.len() as u64 > MAX_PARTS {
                break;
            }
        }
        parts.sort_by_key(|p| p.0);
        Ok(parts)
    }

    /// Completes `upload` from the parts S3 holds, which must be numbered 1..N without a gap
    /// and add up to at most `max_size` bytes; confirms the object's retention; re-reads it
    /// whole to hash it. `Ok(None)` when no part arrived (the upload is aborted). On any
    /// other failure the upload is aborted too, so nothing half-written is left behind.
    pub async fn finish_remote_upload(
        &self,
        upload: &RemoteUpload,
        max_size: u64,
    ) -> Result<Option<RemoteObject>> {
        let result = self.complete_remote(upload, max_size).await;
        if !matches!(result, Ok(Some(_))) {
            let _ = self.abort_remote_upload(upload).await;
        }
        result
    }

    async fn complete_remote(
        &self,
        upload: &RemoteUpload,
        max_size: u64,
    ) -> Result<Option<RemoteObject>> {
        let key = &upload.key;
        let parts = self.list_remote_parts(upload).await?;
        if parts.is_empty() {
            return Ok(None);
        }
        let bad = |code: &str, message: String| Error::S3 {
            operation: "CompleteMultipartUpload",
            target: self.target(key),
            code: code.into(),
            message,
            request_id: None,
        };
        if let Some((i, p)) = parts.iter().enumerate().find(|(i, p)| p.0 != *i as i32 + 1) {
            return Err(bad(
                "PartMissing",
                format!("part {} arrived but part {} did not", p.0, i + 1),
            ));
        }
        let size: u64 = parts.iter().map(|p| p.2).sum();
        if size > max_size {
            return Err(bad(
                "TooLarge",
                format!("{size} bytes arrived, more than the {max_size} allowed"),
            ));
        }
        let done: Vec<CompletedPart> = parts
            .iter()
            .map(|(n, etag, _)| CompletedPart::builder().part_number(*n).e_tag(etag).build())
            .collect();
        let full = self.full_key(key);
        let (version_id, _) = self
            .complete_parts(key, &full, &upload.upload_id, done)
            .await?;
        let (version_id, checksum) = self
            .confirm_locked(
                key,
                &full,
                version_id,
                Some(size),
                "CompleteMultipartUpload",
            )
            .await?;
        // irr's own hash: the object as S3 holds it, streamed back.
        let (sha256, read) = self
            .hash_object(key, version_id.as_deref())
            .await?
            .ok_or_else(|| bad("NoSuchKey", "completed, then not found".into()))?;
        if read != size {
            return Err(bad(
                "SizeMismatch",
                format!("{read} bytes read back, {size} listed"),
            ));
        }
        Ok(Some(RemoteObject {
            stored: StoredObject {
                key: key.clone(),
                sha256,
                size,
                version_id,
                checksum_sha256: checksum,
            },
            parts: parts.len(),
        }))
    }

    /// Aborts `upload` (its parts are discarded; the presigned URLs stop working).
    pub async fn abort_remote_upload(&self, upload: &RemoteUpload) -> Result<()> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .set_expected_bucket_owner(self.owner())
            .key(self.full_key(&upload.key))
            .upload_id(&upload.upload_id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.fail("AbortMultipartUpload", self.target(&upload.key), e))
    }

    /// Multipart uploads in progress under the store key prefix `prefix` (an earlier attempt's,
    /// to abort on a retry).
    pub async fn remote_uploads_under(&self, prefix: &str) -> Result<Vec<RemoteUpload>> {
        let full = self.full_key(prefix);
        let out = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .set_expected_bucket_owner(self.owner())
            .prefix(&full)
            .send()
            .await
            .map_err(|e| self.fail("ListMultipartUploads", self.target(prefix), e))?;
        Ok(out
            .uploads()
            .iter()
            .filter_map(|u| {
                Some(RemoteUpload {
                    key: self.strip(u.key()?)?,
                    upload_id: u.upload_id()?.to_string(),
                })
            })
            .collect())
    }
}

/// The text of every `<tag>...</tag>` in `xml`, in order (no nesting of the same tag).
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

/// A `ListParts` answer read without the SDK: the parts (number, ETag, size), whether it is
/// truncated and the next marker.
fn parse_list_parts(xml: &str) -> (Vec<(i32, String, u64)>, bool, Option<String>) {
    let parts = elements(xml, "Part")
        .into_iter()
        .filter_map(|p| {
            let number = elements(p, "PartNumber").first()?.trim().parse().ok()?;
            let etag = elements(p, "ETag")
                .first()?
                .trim()
                .replace("&quot;", "\"")
                .replace("&#34;", "\"");
            let size = elements(p, "Size").first()?.trim().parse().ok()?;
            Some((number, etag, size))
        })
        .collect();
    let truncated = elements(xml, "IsTruncated")
        .first()
        .is_some_and(|t| t.trim() == "true");
    let next = elements(xml, "NextPartNumberMarker")
        .first()
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty());
    (parts, truncated, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_parts_document_is_read_without_the_sdk() {
        let xml = r#"<?xml version="1.0"?><ListPartsResponse xmlns="x"><Bucket>b</Bucket><IsTruncated>false</IsTruncated><NextPartNumberMarker>2</NextPartNumberMarker><Part><PartNumber>1</PartNumber><ETag>&quot;aa&quot;</ETag><Size>5242880</Size></Part><Part><PartNumber>2</PartNumber><ETag>"bb"</ETag><Size>7</Size></Part></ListPartsResponse>"#;
        let (parts, truncated, next) = parse_list_parts(xml);
        assert_eq!(
            parts,
            vec![
                (1, "\"aa\"".to_string(), 5_242_880),
                (2, "\"bb\"".to_string(), 7)
            ]
        );
        assert!(!truncated);
        assert_eq!(next.as_deref(), Some("2"));
    }
}
