//! Just enough HTTP/1.1 to relay AWS calls: reading a message, its head and headers, and
//! naming the call (`service:Operation`) from the query, JSON target or S3 request.

use super::*;

/// The largest message the proxy buffers (evidence parts are 5 MiB; a part may grow for
/// very large objects).
pub(super) const MAX_MESSAGE: usize = 256 << 20;

/// Reads one HTTP/1.1 message (head and body: Content-Length, chunked, or, for a response
/// without either, until the connection closes). `response` is `None` for a request, else
/// whether the response answers a HEAD request. Bytes read past the message stay in
/// `pending` for the next one. `None` when the peer closed before sending anything.
pub(super) async fn read_message(
    s: &mut TcpStream,
    pending: &mut Vec<u8>,
    response: Option<bool>,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = std::mem::take(pending);
    let mut chunk = vec![0u8; 64 * 1024];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if fill(s, &mut buf, &mut chunk).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(std::io::Error::other("connection closed inside a head"))
            };
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let no_body = response.is_some_and(|to_head| {
        to_head
            || head.starts_with("http/1.1 204")
            || head.starts_with("http/1.1 304")
            || head.starts_with("http/1.1 100")
    });
    let split = |mut buf: Vec<u8>, end: usize, pending: &mut Vec<u8>| {
        *pending = buf.split_off(end);
        Ok(Some(buf))
    };
    if no_body {
        return split(buf, head_end, pending);
    }
    if let Some(len) = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        if len > MAX_MESSAGE {
            return Err(std::io::Error::other("body over the proxy's size limit"));
        }
        while buf.len() < head_end + len {
            if fill(s, &mut buf, &mut chunk).await? == 0 {
                return Err(std::io::Error::other("connection closed inside a body"));
            }
        }
        return split(buf, head_end + len, pending);
    }
    if header(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        // Walk the chunks: SIZE\r\n DATA\r\n ... 0\r\n [trailers] \r\n
        let mut pos = head_end;
        loop {
            let line_end = loop {
                if let Some(i) = find(&buf[pos..], b"\r\n") {
                    break pos + i;
                }
                if fill(s, &mut buf, &mut chunk).await? == 0 {
                    return Err(std::io::Error::other("connection closed inside a chunk"));
                }
            };
            let size_text = String::from_utf8_lossy(&buf[pos..line_end]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|e| std::io::Error::other(format!("chunk size {size_text:?}: {e}")))?;
            if size == 0 {
                // Trailers end with an empty line.
                let mut t = line_end + 2;
                loop {
                    if let Some(i) = find(&buf[t..], b"\r\n") {
                        if i == 0 {
                            return split(buf, t + 2, pending);
                        }
                        t += i + 2;
                        continue;
                    }
                    if fill(s, &mut buf, &mut chunk).await? == 0 {
                        return Err(std::io::Error::other("connection closed in trailers"));
                    }
                }
            }
            let next = line_end + 2 + size + 2;
            while buf.len() < next {
                if fill(s, &mut buf, &mut chunk).await? == 0 {
                    return Err(std::io::Error::other("connection closed inside a chunk"));
                }
            }
            pos = next;
        }
    }
    if response.is_some() {
        while fill(s, &mut buf, &mut chunk).await? > 0 {}
    }
    Ok(Some(buf))
}

/// Reads what is there into `buf`; 0 at the end of the stream.
pub(super) async fn fill(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    chunk: &mut [u8],
) -> std::io::Result<usize> {
    let n = s.read(chunk).await?;
    if buf.len() + n > MAX_MESSAGE {
        return Err(std::io::Error::other("message over the proxy's size limit"));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

pub(super) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub(super) fn head_of(msg: &[u8]) -> String {
    let end = find(msg, b"\r\n\r\n").unwrap_or(msg.len());
    String::from_utf8_lossy(&msg[..end]).into_owned()
}

/// A header's value (case-insensitive name) from a message head.
pub(super) fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// The signing service of a request (`Credential=KEY/DATE/REGION/SERVICE/aws4_request`).
pub(super) fn service_of(head: &str) -> String {
    header(head, "authorization")
        .and_then(|a| {
            a.split("Credential=")
                .nth(1)
                .and_then(|c| c.split('/').nth(3))
                .map(str::to_owned)
        })
        // A presigned request: the credential scope is in the query string, `/` encoded.
        .or_else(|| {
            let target = head.lines().next()?.split(' ').nth(1)?;
            let cred = target.split("X-Amz-Credential=").nth(1)?;
            let cred = cred
                .split('&')
                .next()?
                .replace("%2F", "/")
                .replace("%2f", "/");
            cred.split('/').nth(3).map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// `Action=NAME` of a query-protocol request (form body or query string).
pub(super) fn query_operation(msg: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(msg);
    let i = text
        .find("?Action=")
        .or_else(|| text.find("&Action="))
        .map(|i| i + 1)
        .or_else(|| {
            let body = find(msg, b"\r\n\r\n")? + 4;
            text[body..].starts_with("Action=").then_some(body)
        })?;
    text[i + 7..]
        .split(['&', '\r', '\n', ' '])
        .next()
        .map(str::to_owned)
}

/// A name for an S3 REST request, from its method, path and query.
pub(super) fn s3_operation(head: &str) -> String {
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    // `/bucket/key`; `/bucket` and `/bucket/` (how the SDK addresses a bucket path style)
    // are the bucket itself.
    let has_key = path
        .trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(_, key)| !key.is_empty());
    let q = |k: &str| {
        query
            .split('&')
            .any(|p| p == k || p.starts_with(&format!("{k}=")))
    };
    let sub = [
        ("uploads", "MultipartUpload"),
        ("uploadId", "Part"),
        ("versioning", "BucketVersioning"),
        ("object-lock", "ObjectLockConfiguration"),
        ("retention", "ObjectRetention"),
        ("legal-hold", "ObjectLegalHold"),
        ("policy", "BucketPolicy"),
        ("acl", "Acl"),
        ("publicAccessBlock", "PublicAccessBlock"),
        ("encryption", "BucketEncryption"),
        ("tagging", "Tagging"),
        ("versions", "ObjectVersions"),
    ];
    let named = sub.iter().find(|(k, _)| q(k)).map(|(_, n)| *n);
    match (method, named, has_key) {
        ("POST", Some("MultipartUpload"), _) => "CreateMultipartUpload".into(),
        ("PUT", Some("Part"), _) => "UploadPart".into(),
        ("POST", Some("Part"), _) => "CompleteMultipartUpload".into(),
        ("DELETE", Some("Part"), _) => "AbortMultipartUpload".into(),
        ("GET", Some("ObjectVersions"), _) => "ListObjectVersions".into(),
        ("GET", Some(n), _) => format!("Get{n}"),
        ("PUT", Some(n), _) => format!("Put{n}"),
        ("DELETE", Some(n), _) => format!("Delete{n}"),
        ("GET", None, true) => "GetObject".into(),
        ("HEAD", None, true) => "HeadObject".into(),
        ("PUT", None, true) => "PutObject".into(),
        ("DELETE", None, true) => "DeleteObject".into(),
        ("GET", None, false) if path.len() > 1 => "ListObjects".into(),
        ("GET", None, false) => "ListBuckets".into(),
        ("HEAD", None, false) => "HeadBucket".into(),
        ("PUT", None, false) => "CreateBucket".into(),
        ("DELETE", None, false) => "DeleteBucket".into(),
        (m, _, _) => format!("{m}Unknown"),
    }
}
