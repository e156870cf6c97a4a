//! The filesystem blob store: the conformance suite, and what only a store on disk can show
//! (an upload resumed by a restarted server or after its client went away, no partial blob
//! after a crash, upload ids that cannot name a path).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use flotilla_registry::conformance::{self, body, read_all};
use flotilla_registry::digest;
use flotilla_registry::storage::fs::{FsBlobStore, FsOptions};
use flotilla_registry::{BlobStore, StorageError, UploadId};

/// Everything through the page cache, as on a file system that refuses `O_DIRECT`.
const CACHED: FsOptions = FsOptions { direct_io: false, recent_blobs_bytes: 0 };
/// Past the page cache, with no recent blob kept in memory: every read comes from the file.
const DIRECT_ONLY: FsOptions = FsOptions { direct_io: true, recent_blobs_bytes: 0 };
const MIB: usize = 1024 * 1024;

#[tokio::test]
async fn the_filesystem_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance::run_all(&FsBlobStore::open(dir.path()).unwrap()).await;
}

#[tokio::test]
async fn the_filesystem_store_conforms_through_the_page_cache() {
    let dir = tempfile::tempdir().unwrap();
    conformance::run_all(&FsBlobStore::open_with(dir.path(), CACHED).unwrap()).await;
}

/// Bytes of `path` in the page cache, as util-linux's `fincore` reports them.
fn cached_bytes(path: &std::path::Path) -> u64 {
    let output = std::process::Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(path)
        .output()
        .expect("fincore (util-linux) runs");
    String::from_utf8_lossy(&output.stdout).trim().parse().expect("a byte count")
}

/// `direct_io` decides where a large upload's bytes go: past the page cache (all but its
/// last partial block), or through it (all of them, still cached once the
/// upload is durable). With direct I/O, the first read of the blob goes past the page cache
/// too, and the next one through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_blob_goes_past_the_page_cache_unless_told_otherwise_or_read_again() {
    // Not a whole number of blocks: the last one is partial.
    const SIZE: usize = 40 * 1024 * 1024 + 1000;
    const CHUNK: usize = 200_000;
    // Through the page cache: the last partial block only (the store gathers what it
    // receives into aligned 4 MiB buffers, whatever the chunks, and writes them directly).
    const CACHED_AT_MOST: u64 = 4096;
    // Through the page cache: (nearly) all of it. The host may reclaim some pages between the
    // read and the count (these VMs run proactive reclaim, which once took part of the blob
    // away in that moment); half the blob still tells the two ways apart by four orders of
    // magnitude.
    const CACHED_AT_LEAST: u64 = SIZE as u64 / 2;
    // On a disk: a tmpfs file never leaves memory.
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    for (options, name) in [(DIRECT_ONLY, "direct"), (CACHED, "cached")] {
        let root = dir.path().join(name);
        let store = FsBlobStore::open_with(&root, options).unwrap();
        let content: Vec<u8> =
            (0..SIZE as u32).map(|i| ((i % 251) ^ (i >> 16) ^ options.direct_io as u32) as u8).collect();
        let digest = digest::of(&content);
        let upload = store.start_upload().await.unwrap();
        let chunks: Vec<&[u8]> = content.chunks(CHUNK).collect();
        store.append(&upload, 0, body(&chunks)).await.unwrap();
        store.finish_upload(&upload, &digest).await.unwrap();
        let hex = digest.digest();
        let cached = cached_bytes(&root.join("blobs/sha256").join(&hex[..2]).join(hex));
        let path = root.join("blobs/sha256").join(&hex[..2]).join(hex);
        if options.direct_io {
            assert!(cached <= CACHED_AT_MOST, "{cached} of {SIZE} bytes in the page cache");
            assert!(read_all(&store, &digest, 0).await == content, "{name}: the blob reads back");
            let cached = cached_bytes(&path);
            assert!(cached <= CACHED_AT_MOST, "after a first read, {cached} of {SIZE} bytes in the page cache");
        } else {
            assert!(cached >= CACHED_AT_LEAST, "{cached} of {SIZE} bytes in the page cache");
        }
        assert!(read_all(&store, &digest, 0).await == content, "{name}: the blob reads back again");
        let cached = cached_bytes(&path);
        assert!(cached >= CACHED_AT_LEAST, "{name}: after another read, {cached} of {SIZE} bytes in the page cache");
    }
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

/// A large upload whose client goes away in its middle: the chunks that arrived are written
/// whole and in order before the next append to the upload starts, so the resumed upload
/// ends with exactly the content sent (the writes go on in a thread of their own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_cut_off_by_its_client_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(FsBlobStore::open(dir.path()).unwrap());
    // A position pattern mixed with the 64 KiB chunk's number: no two chunks are alike, so a
    // chunk written out of place changes the digest.
    let content: Vec<u8> = (0..48 * 1024 * 1024u32).map(|i| ((i % 251) ^ (i >> 16)) as u8).collect();
    let digest = digest::of(&content);
    let upload = store.start_upload().await.unwrap();
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, StorageError>>(4);
    let cut_off = {
        let (store, upload) = (store.clone(), upload.clone());
        let body = futures::StreamExt::boxed(tokio_stream_of(receiver));
        tokio::spawn(async move { store.append(&upload, 0, body).await })
    };
    for chunk in content[..40 * 1024 * 1024].chunks(64 * 1024) {
        sender.send(Ok(bytes::Bytes::copy_from_slice(chunk))).await.unwrap();
    }
    // The client is gone, its body never ended: the request's future is dropped.
    cut_off.abort();
    assert!(cut_off.await.unwrap_err().is_cancelled());
    drop(sender);
    // As a client does: ask where the upload is, send the rest from there.
    let size = loop {
        let at = store.upload_size(&upload).await.unwrap();
        assert!(at <= 40 * 1024 * 1024, "never more than was sent: {at}");
        let rest = usize::try_from(at).unwrap();
        match store.append(&upload, at, body(&[&content[rest..]])).await {
            Ok(size) => break size,
            // The chunks still queued were written meanwhile: ask again.
            Err(StorageError::OffsetMismatch { .. }) => continue,
            Err(other) => panic!("resuming failed: {other:?}"),
        }
    };
    assert_eq!(size, content.len() as u64);
    store.finish_upload(&upload, &digest).await.unwrap();
    assert!(read_all(store.as_ref(), &digest, 0).await == content, "the blob is what was sent, in order");
}

/// Appends of every shape land in place: the store gathers an append's bytes into aligned
/// 4 MiB buffers and writes them past the page cache (in a thread of its own), but an append
/// smaller than that, the first 4 MiB of one starting off a block, and the last partial block
/// go through it, so these appends start at unaligned offsets, cross batch boundaries in
/// chunks of odd sizes, and end short of a block, of a batch, or exactly on one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_of_any_size_at_any_offset_land_in_place() {
    appends_land_in_place(FsOptions::default()).await;
}

/// The same appends with everything through the page cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_of_any_size_at_any_offset_land_in_place_through_the_page_cache() {
    appends_land_in_place(CACHED).await;
}

async fn appends_land_in_place(options: FsOptions) {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open_with(dir.path(), options).unwrap();
    let sizes = [3, 2 * 4 * MIB + 5, 4093, 4 * MIB - 1, 4 * MIB, 1, MIB + 17, 12 * MIB, 21 * MIB + 7];
    let content: Vec<u8> = (0..sizes.iter().sum::<usize>() as u32).map(|i| ((i % 251) ^ (i >> 16)) as u8).collect();
    let upload = store.start_upload().await.unwrap();
    let mut at = 0;
    for (number, size) in sizes.into_iter().enumerate() {
        let part = &content[at..at + size];
        let chunks: Vec<&[u8]> = part.chunks(65_537 + number * 4_099).collect();
        let grown = store.append(&upload, at as u64, body(&chunks)).await.unwrap();
        at += size;
        assert_eq!(grown, at as u64, "append {number} ({size} bytes) grew the upload by its size");
    }
    let digest = digest::of(&content);
    assert_eq!(store.finish_upload(&upload, &digest).await.unwrap(), content.len() as u64);
    let stored = read_all(&store, &digest, 0).await;
    assert_eq!(stored.len(), content.len());
    let first_difference = stored.iter().zip(&content).position(|(stored, sent)| stored != sent);
    assert_eq!(first_difference, None, "the blob is what was sent, byte for byte");
    // A large blob is read past the page cache in aligned 4 MiB reads: reads resumed at any
    // offset start at the right byte.
    for offset in [1, 4095, 4096, 4 * MIB + 3, 8 * MIB, content.len() - 1, content.len()] {
        let rest = read_all(&store, &digest, offset as u64).await;
        assert!(rest == content[offset..], "the read from offset {offset} is the blob's rest");
    }
    // More reads of it at once than may go past the page cache (they hold buffers): those
    // beyond the limit read through the page cache, with the same result.
    let opened = futures::future::join_all((0..12).map(|_| store.read(&digest, 5))).await;
    for (number, stream) in opened.into_iter().enumerate() {
        let chunks: Vec<bytes::Bytes> = futures::TryStreamExt::try_collect(stream.unwrap()).await.unwrap();
        assert!(chunks.concat() == content[5..], "read {number} of 12 at once is the blob's rest");
    }
}

/// More large appends at once than may write past the page cache (each holds buffers): the
/// others write through the page cache, and every upload ends as exactly what was sent. All
/// appends have written 8 MiB (past the 4 MiB from which direct writes start) before any
/// of them ends, so they all want to write directly at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_large_appends_at_once_than_write_directly_all_land_whole() {
    const UPLOADS: u32 = 12;
    const SIZE: usize = 13 * MIB + 3;
    const FIRST: usize = 12 * MIB;
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(FsBlobStore::open(dir.path()).unwrap());
    let contents: Vec<Vec<u8>> = (0..UPLOADS)
        .map(|upload| (0..SIZE as u32).map(|i| ((i % 251) ^ (i >> 16) ^ (upload * 7)) as u8).collect())
        .collect();
    let (mut senders, mut appends, mut uploads) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..UPLOADS {
        let upload = store.start_upload().await.unwrap();
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, StorageError>>(256);
        let (store, appending) = (store.clone(), upload.clone());
        let body = futures::StreamExt::boxed(tokio_stream_of(receiver));
        appends.push(tokio::spawn(async move { store.append(&appending, 0, body).await }));
        senders.push(sender);
        uploads.push(upload);
    }
    for (sender, content) in senders.iter().zip(&contents) {
        for chunk in content[..FIRST].chunks(100_003) {
            sender.send(Ok(bytes::Bytes::copy_from_slice(chunk))).await.unwrap();
        }
    }
    for upload in &uploads {
        while store.upload_size(upload).await.unwrap() < 8 * MIB as u64 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    for (sender, content) in senders.into_iter().zip(&contents) {
        for chunk in content[FIRST..].chunks(100_003) {
            sender.send(Ok(bytes::Bytes::copy_from_slice(chunk))).await.unwrap();
        }
    }
    for (number, append) in appends.into_iter().enumerate() {
        assert_eq!(append.await.unwrap().unwrap(), SIZE as u64, "upload {number} grew by its size");
    }
    for (upload, content) in uploads.iter().zip(&contents) {
        let digest = digest::of(content);
        store.finish_upload(upload, &digest).await.unwrap();
        assert!(read_all(store.as_ref(), &digest, 0).await == *content, "each blob is what was sent");
    }
}

/// The file of `digest` in the store at `root`.
fn blob_file(root: &std::path::Path, digest: &digest::Digest) -> std::path::PathBuf {
    let hex = digest.digest();
    root.join("blobs/sha256").join(&hex[..2]).join(hex)
}

/// Pushes `content` in one append of chunks of `chunk` bytes.
async fn push(store: &FsBlobStore, content: &[u8], chunk: usize) -> digest::Digest {
    let digest = digest::of(content);
    let upload = store.start_upload().await.unwrap();
    store.append(&upload, 0, body(&content.chunks(chunk).collect::<Vec<_>>())).await.unwrap();
    store.finish_upload(&upload, &digest).await.unwrap();
    digest
}

/// Whether `digest` reads back as `content` with its file gone, i.e. from memory.
async fn kept_in_memory(store: &FsBlobStore, root: &std::path::Path, digest: &digest::Digest, content: &[u8]) -> bool {
    std::fs::remove_file(blob_file(root, digest)).unwrap();
    match store.read(digest, 0).await {
        Ok(stream) => {
            let chunks: Vec<bytes::Bytes> = futures::TryStreamExt::try_collect(stream).await.unwrap();
            assert!(chunks.concat() == content, "a blob kept in memory reads back as pushed");
            true
        }
        Err(StorageError::BlobNotFound(_)) => false,
        Err(other) => panic!("reading {digest} failed: {other:?}"),
    }
}

/// A large blob pushed in appends of a buffer's worth or more is kept in memory, in the
/// buffers its push filled, within the budget: its reads (from any offset) are served from
/// there. A newer one makes room by sending the least recently used away; a deleted blob, a
/// blob pushed in small appends, one larger than the budget, and any blob of a store with no
/// budget are not kept. "Kept" is told by removing the blob's file behind the store's back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_pushes_are_kept_in_memory_within_the_budget() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let root = dir.path().join("budgeted");
    // Three buffers of 4 MiB.
    let store =
        FsBlobStore::open_with(&root, FsOptions { direct_io: true, recent_blobs_bytes: 12 * MIB as u64 }).unwrap();
    let pattern =
        |len: usize, seed: u32| -> Vec<u8> { (0..len as u32).map(|i| ((i % 251) ^ (i >> 16) ^ seed) as u8).collect() };

    // Two buffers and a partial one, in odd chunks.
    let first = pattern(9 * MIB + 5, 1);
    let first_digest = push(&store, &first, 100_003).await;
    std::fs::copy(blob_file(&root, &first_digest), root.join("first")).unwrap();
    let memory = store.memory();
    assert_eq!((memory.recent_blobs, memory.recent_blob_bytes), (1, first.len() as u64));
    assert!(memory.buffer_bytes >= 3 * 4 * MIB as u64, "the kept blob's buffers are the store's: {memory:?}");
    assert!(kept_in_memory(&store, &root, &first_digest, &first).await);
    for offset in [1, 4095, 4 * MIB + 3, 8 * MIB, first.len() - 1, first.len()] {
        let rest = read_all(&store, &first_digest, offset as u64).await;
        assert!(rest == first[offset..], "the read from offset {offset} is the blob's rest");
    }
    assert_eq!(store.memory().reads_from_memory, 7, "the read with the file gone, and six from offsets");

    // A second blob, resumed once, in three buffers (a full and a partial one, then a full
    // one): the first no longer fits beside it.
    let second = pattern(9 * MIB, 2);
    let second_digest = digest::of(&second);
    let upload = store.start_upload().await.unwrap();
    store.append(&upload, 0, body(&second[..5 * MIB].chunks(65_536).collect::<Vec<_>>())).await.unwrap();
    store.append(&upload, 5 * MIB as u64, body(&[&second[5 * MIB..]])).await.unwrap();
    store.finish_upload(&upload, &second_digest).await.unwrap();
    assert!(store.read(&first_digest, 0).await.is_err(), "the first blob made room: its file is gone");
    std::fs::copy(root.join("first"), blob_file(&root, &first_digest)).unwrap();
    assert!(read_all(&store, &first_digest, 0).await == first, "from its file again");
    assert!(kept_in_memory(&store, &root, &second_digest, &second).await);
    // Deleted: gone from memory too.
    store.delete(&second_digest).await.unwrap();
    assert!(matches!(store.read(&second_digest, 0).await, Err(StorageError::BlobNotFound(_))));
    assert_eq!((store.memory().recent_blobs, store.memory().recent_blob_bytes), (0, 0));

    // Small appends (each less than a buffer), or larger than the budget: not kept.
    let small = pattern(6 * MIB, 3);
    let small_digest = digest::of(&small);
    let upload = store.start_upload().await.unwrap();
    for at in (0..small.len()).step_by(MIB) {
        store.append(&upload, at as u64, body(&[&small[at..at + MIB]])).await.unwrap();
    }
    store.finish_upload(&upload, &small_digest).await.unwrap();
    assert!(!kept_in_memory(&store, &root, &small_digest, &small).await, "pushed in small appends");
    let large = pattern(13 * MIB, 4);
    let large_digest = push(&store, &large, MIB).await;
    assert!(!kept_in_memory(&store, &root, &large_digest, &large).await, "larger than the budget");

    // No budget: nothing kept.
    let unbudgeted_root = dir.path().join("unbudgeted");
    let unbudgeted = FsBlobStore::open_with(&unbudgeted_root, DIRECT_ONLY).unwrap();
    let digest = push(&unbudgeted, &first, 100_003).await;
    assert!(!kept_in_memory(&unbudgeted, &unbudgeted_root, &digest, &first).await, "a store without a budget");
}

/// A tokio channel's receiver as a stream (what `tokio-stream`'s wrapper does).
fn tokio_stream_of<T: Send + 'static>(receiver: tokio::sync::mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::unfold(receiver, |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) })
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
