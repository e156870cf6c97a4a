//! The behaviour every [`BlobStore`] must show (the guarantees of [`crate::storage`]). Each
//! implementation's tests call [`run_all`] on a fresh, empty store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed check is a failed test

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};

use crate::digest;
use crate::storage::{BlobStore, BlobStream, StorageError};

/// `chunks` as an upload body.
pub fn body(chunks: &[&[u8]]) -> BlobStream {
    let chunks: Vec<Result<Bytes, StorageError>> = chunks.iter().map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    stream::iter(chunks).boxed()
}

/// The whole content of a blob from `offset` on.
pub async fn read_all(store: &dyn BlobStore, digest: &digest::Digest, offset: u64) -> Vec<u8> {
    let chunks: Vec<Bytes> = store.read(digest, offset).await.unwrap().try_collect().await.unwrap();
    chunks.concat()
}

/// Runs every check, in order, on an empty store.
pub async fn run_all(store: &dyn BlobStore) {
    a_monolithic_upload_becomes_a_blob(store).await;
    a_large_blob_reads_back_whole(store).await;
    chunks_follow_each_other_and_an_upload_resumes(store).await;
    a_wrong_digest_stores_nothing(store).await;
    unfinished_and_cancelled_uploads_stay_invisible(store).await;
    the_same_content_twice_is_one_blob(store).await;
    unknown_uploads_and_blobs_are_errors(store).await;
    deleted_blobs_are_gone(store).await;
    stale_uploads_are_removed(store).await;
}

pub async fn a_monolithic_upload_becomes_a_blob(store: &dyn BlobStore) {
    let content = b"a layer, in one piece".to_vec();
    let digest = digest::of(&content);
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    let upload = store.start_upload().await.unwrap();
    assert_eq!(store.upload_size(&upload).await.unwrap(), 0);
    assert_eq!(store.append(&upload, 0, body(&[&content])).await.unwrap(), content.len() as u64);
    assert_eq!(store.stat(&digest).await.unwrap(), None, "not visible before the upload is finished");
    assert_eq!(store.finish_upload(&upload, &digest).await.unwrap(), content.len() as u64);
    assert_eq!(store.stat(&digest).await.unwrap(), Some(content.len() as u64));
    assert_eq!(read_all(store, &digest, 0).await, content);
    assert_eq!(read_all(store, &digest, 8).await, content[8..], "a ranged read starts at its offset");
    assert_eq!(store.read_small(&digest).await.unwrap(), content, "a small blob whole");
    assert!(store.list().await.unwrap().contains(&digest));
    assert!(matches!(store.upload_size(&upload).await, Err(StorageError::UnknownUpload(_))), "the upload ended");
}

/// A blob of several MiB (more than one chunk of any sensible reader) reads back whole, and
/// from an offset in its middle.
pub async fn a_large_blob_reads_back_whole(store: &dyn BlobStore) {
    let content: Vec<u8> = (0..2_621_440u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    let digest = digest::of(&content);
    let upload = store.start_upload().await.unwrap();
    let (first, second) = content.split_at(1_000_003);
    store.append(&upload, 0, body(&[first, second])).await.unwrap();
    store.finish_upload(&upload, &digest).await.unwrap();
    assert!(read_all(store, &digest, 0).await == content, "the whole blob");
    assert!(read_all(store, &digest, 1_572_864).await == content[1_572_864..], "from the middle on");
}

pub async fn chunks_follow_each_other_and_an_upload_resumes(store: &dyn BlobStore) {
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let digest = digest::of(&content);
    let upload = store.start_upload().await.unwrap();
    let first = store.append(&upload, 0, body(&[&content[..1000], &content[1000..70_000]])).await.unwrap();
    assert_eq!(first, 70_000);
    match store.append(&upload, 60_000, body(&[&content[60_000..]])).await {
        Err(StorageError::OffsetMismatch { expected: 70_000, given: 60_000 }) => {}
        other => panic!("an overlapping chunk must be refused with the expected offset: {other:?}"),
    }
    assert_eq!(store.upload_size(&upload).await.unwrap(), 70_000, "a refused chunk changes nothing");
    let resume_at = store.upload_size(&upload).await.unwrap();
    let end = store.append(&upload, resume_at, body(&[&content[70_000..]])).await.unwrap();
    assert_eq!(end, content.len() as u64);
    store.finish_upload(&upload, &digest).await.unwrap();
    assert_eq!(read_all(store, &digest, 0).await, content);
}

pub async fn a_wrong_digest_stores_nothing(store: &dyn BlobStore) {
    let content = b"what was sent".to_vec();
    let claimed = digest::of(b"what the client claims");
    let upload = store.start_upload().await.unwrap();
    store.append(&upload, 0, body(&[&content])).await.unwrap();
    match store.finish_upload(&upload, &claimed).await {
        Err(StorageError::DigestMismatch { expected, computed }) => {
            assert_eq!(expected, claimed);
            assert_eq!(computed, digest::of(&content));
        }
        other => panic!("a wrong digest must be refused: {other:?}"),
    }
    assert_eq!(store.stat(&claimed).await.unwrap(), None);
    assert_eq!(store.stat(&digest::of(&content)).await.unwrap(), None, "nor stored under its real digest");
    assert!(matches!(store.upload_size(&upload).await, Err(StorageError::UnknownUpload(_))), "the upload ended");
}

pub async fn unfinished_and_cancelled_uploads_stay_invisible(store: &dyn BlobStore) {
    let before = store.list().await.unwrap();
    let content = b"never finished".to_vec();
    let abandoned = store.start_upload().await.unwrap();
    store.append(&abandoned, 0, body(&[&content])).await.unwrap();
    let cancelled = store.start_upload().await.unwrap();
    store.append(&cancelled, 0, body(&[b"cancelled"])).await.unwrap();
    store.cancel_upload(&cancelled).await.unwrap();
    assert!(matches!(store.upload_size(&cancelled).await, Err(StorageError::UnknownUpload(_))));
    assert_eq!(store.list().await.unwrap(), before, "no upload shows as a blob");
    assert_eq!(store.stat(&digest::of(&content)).await.unwrap(), None);
    // A failing body (the client went away) keeps what arrived; the upload can go on.
    let broken: BlobStream =
        stream::iter(vec![Ok(Bytes::from_static(b"half")), Err(StorageError::Body("connection reset".into()))]).boxed();
    assert!(matches!(store.append(&abandoned, content.len() as u64, broken).await, Err(StorageError::Body(_))));
    let size = store.upload_size(&abandoned).await.unwrap();
    assert_eq!(size, content.len() as u64 + 4);
    store.append(&abandoned, size, body(&[b" done"])).await.unwrap();
    let whole = [content.as_slice(), b"half", b" done"].concat();
    store.finish_upload(&abandoned, &digest::of(&whole)).await.unwrap();
    assert_eq!(read_all(store, &digest::of(&whole), 0).await, whole);
}

pub async fn the_same_content_twice_is_one_blob(store: &dyn BlobStore) {
    let content = b"pushed by two clients".to_vec();
    let digest = digest::of(&content);
    let (one, two) = (store.start_upload().await.unwrap(), store.start_upload().await.unwrap());
    store.append(&one, 0, body(&[&content])).await.unwrap();
    store.append(&two, 0, body(&[&content])).await.unwrap();
    store.finish_upload(&one, &digest).await.unwrap();
    store.finish_upload(&two, &digest).await.unwrap();
    assert_eq!(store.list().await.unwrap().iter().filter(|d| **d == digest).count(), 1);
    assert_eq!(read_all(store, &digest, 0).await, content);
}

pub async fn unknown_uploads_and_blobs_are_errors(store: &dyn BlobStore) {
    let missing = digest::of(b"nobody pushed this");
    assert!(matches!(store.read(&missing, 0).await, Err(StorageError::BlobNotFound(d)) if d == missing));
    assert!(matches!(store.read_small(&missing).await, Err(StorageError::BlobNotFound(d)) if d == missing));
    let unknown = crate::storage::UploadId::new();
    assert!(matches!(store.upload_size(&unknown).await, Err(StorageError::UnknownUpload(_))));
    assert!(matches!(store.append(&unknown, 0, body(&[b"x"])).await, Err(StorageError::UnknownUpload(_))));
    assert!(matches!(store.finish_upload(&unknown, &missing).await, Err(StorageError::UnknownUpload(_))));
    assert!(matches!(store.cancel_upload(&unknown).await, Err(StorageError::UnknownUpload(_))));
    let sha512: digest::Digest = format!("sha512:{}", "ab".repeat(64)).parse().unwrap();
    assert!(matches!(store.stat(&sha512).await, Err(StorageError::Digest(digest::DigestError::Unsupported(_)))));
}

pub async fn deleted_blobs_are_gone(store: &dyn BlobStore) {
    let content = b"to be collected".to_vec();
    let digest = digest::of(&content);
    let upload = store.start_upload().await.unwrap();
    store.append(&upload, 0, body(&[&content])).await.unwrap();
    store.finish_upload(&upload, &digest).await.unwrap();
    assert!(store.delete(&digest).await.unwrap());
    assert!(!store.delete(&digest).await.unwrap(), "a second delete finds nothing");
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    assert!(!store.list().await.unwrap().contains(&digest));
}

pub async fn stale_uploads_are_removed(store: &dyn BlobStore) {
    let upload = store.start_upload().await.unwrap();
    store.append(&upload, 0, body(&[b"abandoned"])).await.unwrap();
    assert_eq!(store.remove_stale_uploads(std::time::Duration::from_secs(3600)).await.unwrap(), 0, "not idle long");
    assert_eq!(store.upload_size(&upload).await.unwrap(), 9);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(store.remove_stale_uploads(std::time::Duration::from_millis(10)).await.unwrap() >= 1);
    assert!(matches!(store.upload_size(&upload).await, Err(StorageError::UnknownUpload(_))));
}
