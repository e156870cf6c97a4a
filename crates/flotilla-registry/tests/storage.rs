//! The filesystem blob store: the conformance suite, and what only a store on disk can show
//! (an upload resumed by a restarted server, no partial blob after a crash, upload ids that
//! cannot name a path).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use flotilla_registry::conformance::{self, body, read_all};
use flotilla_registry::digest;
use flotilla_registry::storage::fs::FsBlobStore;
use flotilla_registry::{BlobStore, StorageError, UploadId};

#[tokio::test]
async fn the_filesystem_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance::run_all(&FsBlobStore::open(dir.path()).unwrap()).await;
}

#[tokio::test]
async fn an_upload_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let content: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let digest = digest::of(&content);
    let upload = {
        let store = FsBlobStore::open(dir.path()).unwrap();
        let upload = store.start_upload().await.unwrap();
        store.append(&upload, 0, body(&[&content[..400_000]])).await.unwrap();
        upload
    };
    // A new server on the same directory: the upload is where the client left it.
    let store = FsBlobStore::open(dir.path()).unwrap();
    let resume_at = store.upload_size(&upload).await.unwrap();
    assert_eq!(resume_at, 400_000);
    store.append(&upload, resume_at, body(&[&content[400_000..]])).await.unwrap();
    store.finish_upload(&upload, &digest).await.unwrap();
    assert_eq!(read_all(&store, &digest, 0).await, content);

    // Finished right after a restart, with no chunk since: the digest is taken from the file.
    let other = b"finished by the next server".to_vec();
    let upload = store.start_upload().await.unwrap();
    store.append(&upload, 0, body(&[&other])).await.unwrap();
    drop(store);
    let store = FsBlobStore::open(dir.path()).unwrap();
    let wrong = digest::of(b"something else");
    assert!(matches!(store.finish_upload(&upload, &wrong).await, Err(StorageError::DigestMismatch { .. })));
    let upload = store.start_upload().await.unwrap();
    store.append(&upload, 0, body(&[&other])).await.unwrap();
    drop(store);
    let store = FsBlobStore::open(dir.path()).unwrap();
    store.finish_upload(&upload, &digest::of(&other)).await.unwrap();
    assert_eq!(read_all(&store, &digest::of(&other), 0).await, other);
}

#[tokio::test]
async fn what_a_crash_leaves_in_uploads_is_never_a_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).unwrap();
    let content = b"cut short by a crash".to_vec();
    let upload = store.start_upload().await.unwrap();
    store.append(&upload, 0, body(&[&content[..5]])).await.unwrap();
    drop(store);
    let store = FsBlobStore::open(dir.path()).unwrap();
    assert!(store.list().await.unwrap().is_empty());
    assert_eq!(store.stat(&digest::of(&content)).await.unwrap(), None);
    assert_eq!(store.stat(&digest::of(&content[..5])).await.unwrap(), None);
    // The blob files on disk are exactly the finished blobs.
    let finished = digest::of(b"finished");
    let done = store.start_upload().await.unwrap();
    store.append(&done, 0, body(&[b"finished"])).await.unwrap();
    store.finish_upload(&done, &finished).await.unwrap();
    let hex = finished.digest().to_string();
    let path = dir.path().join("blobs/sha256").join(&hex[..2]).join(&hex);
    assert_eq!(std::fs::read(path).unwrap(), b"finished");
    assert_eq!(store.list().await.unwrap(), vec![finished]);
}

#[test]
fn upload_ids_cannot_name_a_path() {
    for text in ["../../etc/passwd", "", "ABCDEF", "0b1f6e2a-0000-4000-8000-00000000000", "x/y"] {
        assert!(matches!(UploadId::parse(text), Err(StorageError::UnknownUpload(_))), "{text:?}");
    }
    let upload = UploadId::new();
    assert_eq!(UploadId::parse(upload.as_str()).unwrap(), upload);
    // Upper case is the same UUID but not the id that was handed out.
    assert!(UploadId::parse(&upload.as_str().to_uppercase()).is_err());
}
