//! The kv example's store and protocol, in process (no root, no TAP): the
//! RESP parser's limits, recovery after every possible torn commit (of an
//! append and of a compaction), a device that is not a store, and the
//! service over an in-memory link (bad input, pipelining, group commit).
//! `tests/kv_tap.rs` runs the real program with redis-cli, redis-benchmark
//! and SIGKILLs.

use mkernel::net::link::{self, Faults};
use mkernel::net::stack::{Stack, StackConfig, TcpListener, TcpStream};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

#[allow(dead_code, reason = "these tests use only part of the kv example")]
#[path = "../examples/kv.rs"]
mod kv;

use kv::{Op, Parsed, Store, parse};

fn temp(tag: &str, bytes: usize) -> PathBuf {
    let p = std::env::temp_dir().join(format!("mkt-kv-{tag}-{}.img", std::process::id()));
    std::fs::write(&p, vec![0u8; bytes]).unwrap();
    p
}

/// Runs `f` on the store of `path` (opened in a run of its own).
fn with_store<T: 'static>(path: &Path, f: impl FnOnce(Store) -> T + 'static) -> T {
    mkernel::Builder::new()
        .block_file("data", path)
        .run(mkernel::block("data"), move |data| {
            f(Store::open_device(data).expect("the store opens"))
        })
}

/// Every key of `keys` with its value in the store of `path`, and what
/// recovery found.
fn contents(path: &Path, keys: &[Vec<u8>]) -> (BTreeMap<Vec<u8>, Vec<u8>>, kv::Recovery) {
    let keys = keys.to_vec();
    with_store(path, move |s| {
        let mut m = BTreeMap::new();
        for k in keys {
            if let Some(v) = s.get(&k).unwrap() {
                m.insert(k, v);
            }
        }
        assert_eq!(s.len(), m.len(), "keys outside the known set");
        (m, s.recovery().clone())
    })
}

#[test]
fn crc32c_check_value() {
    assert_eq!(kv::Crc::new().update(b"123456789").finish(), 0xe306_9283);
}

#[test]
fn parser_accepts_pipelines_and_inline() {
    let two = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n";
    let Parsed::Command(args, n) = parse(two) else {
        panic!()
    };
    assert_eq!(args, [b"GET".to_vec(), b"k".to_vec()]);
    assert_eq!(
        parse(&two[n..]),
        Parsed::Command(vec![b"PING".to_vec()], 14)
    );
    assert_eq!(
        parse(b"set  a   b\r\n"),
        Parsed::Command(vec![b"set".to_vec(), b"a".to_vec(), b"b".to_vec()], 12)
    );
    assert_eq!(parse(b"*0\r\n"), Parsed::Command(vec![], 4));
    // Binary-safe: CRLF inside a bulk string.
    assert_eq!(
        parse(b"*1\r\n$4\r\na\r\nb\r\n"),
        Parsed::Command(vec![b"a\r\nb".to_vec()], 14)
    );
    // Every proper prefix of a request is incomplete.
    for i in 0..two.len() - 14 {
        assert_eq!(parse(&two[..i]), Parsed::Incomplete, "prefix {i}");
    }
}

#[test]
fn parser_refuses_bad_and_oversized_requests_early() {
    let bad = |b: &[u8]| match parse(b) {
        Parsed::Error(e) => e,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(b)),
    };
    assert!(bad(b"*x\r\n").contains("invalid multibulk length"));
    assert!(bad(b"*2\r\n$3\r\nGET\r\n:1\r\n").contains("expected '$', got ':'"));
    assert!(bad(b"*1\r\n$-1\r\n").contains("invalid bulk length"));
    assert!(bad(b"*1\r\n$3\r\nabcde\r\n").contains("CRLF"));
    // Over the caps: refused from the header alone, before any of the
    // declared bytes arrive (nothing is allocated for them).
    let e = bad(format!("*{}\r\n", kv::MAX_ARGS + 1).as_bytes());
    assert!(e.contains("arguments"), "{e}");
    let e = bad(format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", kv::MAX_VALUE + 1).as_bytes());
    assert!(e.contains("at most 524288 bytes"), "{e}");
    assert!(bad(b"*1\r\n$99999999999999999999999\r\n").contains("invalid bulk length"));
    assert!(bad(&[b'*'; 64]).contains("invalid multibulk length"));
    // Many arguments each under the cap, over the request cap together.
    let mut big = format!("*3\r\n$3\r\nSET\r\n${}\r\n", kv::MAX_VALUE).into_bytes();
    big.extend(std::iter::repeat_n(b'a', kv::MAX_VALUE));
    big.extend_from_slice(format!("\r\n${}\r\n", kv::MAX_VALUE).as_bytes());
    assert!(bad(&big).contains("request over"));
    // An inline line with no end.
    assert!(bad(&vec![b'a'; kv::MAX_INLINE]).contains("too big inline request"));
    assert_eq!(parse(&vec![b'a'; kv::MAX_INLINE - 1]), Parsed::Incomplete);
}

#[test]
fn a_zeroed_file_is_an_empty_store_and_writes_persist() {
    let path = temp("basic", 1 << 20);
    let keys: Vec<Vec<u8>> = (0..20).map(|i| format!("k{i}").into_bytes()).collect();
    let ks = keys.clone();
    let (fresh, results) = with_store(&path, move |s| {
        let fresh = s.recovery().fresh;
        let mut r = s
            .apply(&[
                Op::Set(ks[0].clone(), b"zero".to_vec()),
                Op::Set(ks[1].clone(), vec![7u8; 3000]),
                Op::Del(vec![ks[0].clone(), ks[2].clone()]),
                Op::Set(ks[0].clone(), b"again".to_vec()),
            ])
            .unwrap();
        r.extend(
            s.apply(&[Op::Del(vec![ks[0].clone(), ks[0].clone()])])
                .unwrap(),
        );
        (fresh, r)
    });
    assert!(fresh);
    assert_eq!(results, [0, 0, 1, 0, 1]);
    let (m, rec) = contents(&path, &keys);
    assert!(!rec.fresh && rec.torn_at.is_none());
    assert_eq!(rec.batches, 2);
    assert_eq!(m.len(), 1);
    assert_eq!(m[&keys[1]], vec![7u8; 3000]);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_device_that_is_not_a_store_is_refused() {
    let path = temp("foreign", 1 << 20);
    let mut junk = std::fs::read(&path).unwrap();
    junk[100] = 1;
    std::fs::write(&path, &junk).unwrap();
    let e = mkernel::Builder::new()
        .block_file("data", &path)
        .run(mkernel::block("data"), |data| {
            Store::open_device(data).err().unwrap()
        });
    assert!(e.contains("not a kv store"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), junk, "nothing was written");
    std::fs::write(&path, vec![0u8; 16 * 1024]).unwrap();
    let e = mkernel::Builder::new()
        .block_file("data", &path)
        .run(mkernel::block("data"), |data| {
            Store::open_device(data).err().unwrap()
        });
    assert!(e.contains("too small"), "{e}");
    std::fs::remove_file(path).unwrap();
}

/// The device pages (512 bytes) where `a` and `b` differ.
fn differing_pages(a: &[u8], b: &[u8]) -> Vec<usize> {
    (0..a.len() / 512)
        .filter(|&p| a[p * 512..(p + 1) * 512] != b[p * 512..(p + 1) * 512])
        .collect()
}

/// `a` with the pages `pages` taken from `b`.
fn with_pages(a: &[u8], b: &[u8], pages: &[usize]) -> Vec<u8> {
    let mut f = a.to_vec();
    for &p in pages {
        f[p * 512..(p + 1) * 512].copy_from_slice(&b[p * 512..(p + 1) * 512]);
    }
    f
}

/// Applies `before` then `batch` to a store on a zeroed device of `size`
/// bytes, and checks every state a crash during `batch`'s commit can leave
/// (its pages written in `order`, a prefix of them done): the store opens,
/// holds everything of `before`, and all of `batch` or none of it. Returns
/// how many of those states recovery saw as a torn batch, and whether the
/// batch compacted.
fn every_torn_commit(
    tag: &str,
    size: usize,
    before: Vec<Vec<Op>>,
    batch: Vec<Op>,
    keys: &[Vec<u8>],
) -> (usize, bool) {
    let path = temp(tag, size);
    with_store(&path, move |s| {
        for b in before {
            s.apply(&b).unwrap();
        }
    });
    let a = std::fs::read(&path).unwrap();
    let (state_a, _) = contents(&path, keys);
    let compactions = with_store(&path, move |s| {
        let c0 = s.stats().compactions;
        s.apply(&batch).unwrap();
        s.stats().compactions - c0
    });
    let b = std::fs::read(&path).unwrap();
    let (state_b, _) = contents(&path, keys);
    assert_ne!(state_a, state_b, "the batch changes something");
    // The order the pages were written in: ascending, except that a
    // compaction's switch (a superblock, pages 0 and 8) comes last.
    let mut order = differing_pages(&a, &b);
    order.sort_by_key(|&p| (p == 0 || p == 8, p));
    let mut torn = 0;
    for k in 0..=order.len() {
        std::fs::write(&path, with_pages(&a, &b, &order[..k])).unwrap();
        let (state, rec) = contents(&path, keys);
        torn += usize::from(rec.torn_at.is_some());
        if k == order.len() {
            assert_eq!(state, state_b, "{tag}: the whole commit");
        } else if k == 0 || state != state_b {
            assert_eq!(
                state,
                state_a,
                "{tag}: {k} of {} pages written: neither before nor after",
                order.len()
            );
        }
    }
    std::fs::remove_file(path).unwrap();
    (torn, compactions > 0)
}

fn value(i: usize, len: usize) -> Vec<u8> {
    let mut v = format!("v{i}:").into_bytes();
    v.extend((0..len).map(|j| (i * 31 + j * 7) as u8));
    v
}

#[test]
fn every_torn_append_leaves_the_old_or_the_new_store() {
    let keys: Vec<Vec<u8>> = (0..40).map(|i| format!("key{i}").into_bytes()).collect();
    let before: Vec<Vec<Op>> = (0..5)
        .map(|b| {
            (0..6)
                .map(|i| Op::Set(keys[b * 6 + i].clone(), value(b * 6 + i, 300)))
                .collect()
        })
        .collect();
    // Overwrites, a delete, new keys: ~5 KiB over a dozen pages, the first
    // shared with the previous batch.
    let batch = vec![
        Op::Set(keys[0].clone(), value(100, 1500)),
        Op::Del(vec![keys[1].clone(), keys[39].clone()]),
        Op::Set(keys[35].clone(), value(101, 2000)),
        Op::Set(keys[36].clone(), value(102, 1200)),
    ];
    let (torn, compacted) = every_torn_commit("append", 1 << 20, before, batch, &keys);
    assert!(!compacted);
    assert!(torn >= 5, "recovery saw {torn} torn batches");
}

#[test]
fn every_torn_compaction_leaves_the_old_or_the_new_store() {
    // Regions of 64 KiB: 55 KiB of overwritten values fill one, and the
    // batch that does not fit compacts.
    let size = 8192 + 2 * 64 * 1024;
    let keys: Vec<Vec<u8>> = (0..10).map(|i| format!("key{i}").into_bytes()).collect();
    let before: Vec<Vec<Op>> = (0..55)
        .map(|b| vec![Op::Set(keys[b % 10].clone(), value(b, 1000))])
        .collect();
    let batch = vec![
        Op::Set(keys[3].clone(), value(200, 6000)),
        Op::Del(vec![keys[4].clone()]),
        Op::Set(keys[9].clone(), value(201, 7000)),
    ];
    let (_, compacted) = every_torn_commit("compact", size, before, batch, &keys);
    assert!(compacted, "the batch should have compacted");
}

#[test]
fn a_full_store_says_so_and_deletes_still_work() {
    let path = temp("full", 8192 + 2 * 64 * 1024);
    with_store(&path, |s| {
        let mut full = None;
        for i in 0..100 {
            match s.apply(&[Op::Set(format!("k{i}").into_bytes(), vec![1u8; 4000])]) {
                Ok(_) => {}
                Err(e) => {
                    full = Some((i, e));
                    break;
                }
            }
        }
        let (i, e) = full.expect("the store fills up");
        assert_eq!(e, kv::StoreError::Full);
        assert!(e.to_string().starts_with("store full"));
        assert!(i > 5, "only {i} values fit");
        // Deleting makes room again.
        let keys: Vec<Vec<u8>> = (0..i).map(|j| format!("k{j}").into_bytes()).collect();
        assert_eq!(s.apply(&[Op::Del(keys)]).unwrap(), [i as i64]);
        s.apply(&[Op::Set(b"k".to_vec(), vec![2u8; 4000])]).unwrap();
        assert_eq!(s.len(), 1);
    });
    std::fs::remove_file(path).unwrap();
}

/// The kv service on one end of an in-memory link; `client` runs on the
/// other with a function that sends bytes and reads the reply.
fn with_service(tag: &str, client: impl FnOnce(&dyn Fn(&[u8]) -> Vec<u8>, &Stack) + 'static) {
    let path = temp(tag, 4 << 20);
    let (a, b) = link::pair(Faults::default());
    mkernel::Builder::new()
        .net_link("a", a)
        .net_link("b", b)
        .block_file("data", &path)
        .run(
            (mkernel::net("a"), mkernel::net("b"), mkernel::block("data")),
            |(na, nb, data)| {
                let server = Stack::new(na, StackConfig::parse("10.0.0.1/24", None).unwrap());
                let cstack = Stack::new(nb, StackConfig::parse("10.0.0.2/24", None).unwrap());
                let svc = Rc::new(kv::Service::new(Store::open_device(data).unwrap(), 6379));
                let listener = TcpListener::bind(&server, 6379).unwrap();
                let srv = mkernel::spawn(move || kv::serve(listener, svc));
                let conn = TcpStream::connect(&cstack, "10.0.0.1:6379".parse().unwrap()).unwrap();
                // Sends `req` and reads until the reply ends with what a
                // complete reply ends with (or the connection closes).
                let ask = move |req: &[u8]| -> Vec<u8> {
                    conn.write_all(req).unwrap();
                    let mut got = Vec::new();
                    let mut buf = vec![0u8; 65536];
                    let want = replies(req);
                    while count_replies(&got) < want {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    got
                };
                client(&ask, &cstack);
                srv.cancel();
                let _ = srv.join();
            },
        );
    std::fs::remove_file(path).unwrap();
}

/// How many requests `req` holds (each gets one reply); a malformed one
/// counts as one.
fn replies(req: &[u8]) -> usize {
    let mut n = 0;
    let mut at = 0;
    while at < req.len() {
        n += 1;
        match parse(&req[at..]) {
            Parsed::Command(args, used) => {
                if args.is_empty() {
                    n -= 1;
                }
                at += used;
            }
            _ => break,
        }
    }
    n
}

/// How many complete RESP replies `b` holds.
fn count_replies(b: &[u8]) -> usize {
    fn one(b: &[u8]) -> Option<usize> {
        let nl = b.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&b[1..nl]).ok()?;
        match b[0] {
            b'+' | b'-' | b':' => Some(nl + 2),
            b'$' => {
                let n: i64 = line.parse().ok()?;
                if n < 0 {
                    return Some(nl + 2);
                }
                let end = nl + 2 + n as usize + 2;
                (b.len() >= end).then_some(end)
            }
            b'*' => {
                let n: i64 = line.parse().ok()?;
                let mut at = nl + 2;
                for _ in 0..n.max(0) {
                    at += one(&b[at..])?;
                }
                Some(at)
            }
            _ => None,
        }
    }
    let mut n = 0;
    let mut at = 0;
    while at < b.len() {
        match one(&b[at..]) {
            Some(used) => {
                n += 1;
                at += used;
            }
            None => break,
        }
    }
    n
}

fn cmd(args: &[&[u8]]) -> Vec<u8> {
    let mut r = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        r.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        r.extend_from_slice(a);
        r.extend_from_slice(b"\r\n");
    }
    r
}

#[test]
fn service_answers_commands_in_order_and_errors_clearly() {
    with_service("svc", |ask, _| {
        let s = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
        assert_eq!(s(ask(b"PING\r\n")), "+PONG\r\n");
        // A pipeline: the GET after the SET sees it, the DEL counts.
        let mut p = cmd(&[b"SET", b"k", b"v1"]);
        p.extend(cmd(&[b"GET", b"k"]));
        p.extend(cmd(&[b"SET", b"k", b"v2"]));
        p.extend(cmd(&[b"EXISTS", b"k", b"k", b"nope"]));
        p.extend(cmd(&[b"DEL", b"k", b"nope"]));
        p.extend(cmd(&[b"GET", b"k"]));
        p.extend(cmd(&[b"DBSIZE"]));
        assert_eq!(
            s(ask(&p)),
            "+OK\r\n$2\r\nv1\r\n+OK\r\n:2\r\n:1\r\n$-1\r\n:0\r\n"
        );
        // What clients send on connecting.
        assert_eq!(
            s(ask(&cmd(&[b"CONFIG", b"GET", b"save"]))),
            "*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
        );
        assert_eq!(
            s(ask(&cmd(&[b"CONFIG", b"GET", b"appendonly"]))),
            "*2\r\n$10\r\nappendonly\r\n$3\r\nyes\r\n"
        );
        assert_eq!(s(ask(&cmd(&[b"COMMAND", b"DOCS"]))), "*0\r\n");
        assert!(s(ask(&cmd(&[b"HELLO", b"3"]))).starts_with("-NOPROTO"));
        assert!(s(ask(&cmd(&[b"HELLO"]))).starts_with("*14\r\n$6\r\nserver\r\n"));
        // Errors that leave the connection usable.
        assert_eq!(
            s(ask(&cmd(&[b"FLUSHALL", b"x\r\ny"]))),
            "-ERR unknown command 'FLUSHALL', with args beginning with: 'x??y' \r\n"
        );
        assert_eq!(
            s(ask(&cmd(&[b"GET"]))),
            "-ERR wrong number of arguments for 'get' command\r\n"
        );
        assert!(s(ask(&cmd(&[b"SET", b"k", b"v", b"EX", b"10"]))).starts_with("-ERR syntax error"));
        let long = vec![b'k'; kv::MAX_KEY + 1];
        assert_eq!(
            s(ask(&cmd(&[b"SET", &long, b"v"]))),
            "-ERR key too long (at most 4096 bytes)\r\n"
        );
        // The largest value goes through whole.
        let big = vec![b'x'; kv::MAX_VALUE];
        assert_eq!(s(ask(&cmd(&[b"SET", b"big", &big]))), "+OK\r\n");
        let got = ask(&cmd(&[b"GET", b"big"]));
        assert_eq!(&got[got.len() - 2..], b"\r\n");
        assert_eq!(got.len(), "$524288\r\n".len() + kv::MAX_VALUE + 2);
        let info = s(ask(&cmd(&[b"INFO"])));
        for field in [
            "# Persistence",
            "commits:",
            "db0:keys=1,",
            "recovered_fresh:1",
        ] {
            assert!(info.contains(field), "{field} in {info}");
        }
        // A protocol error closes the connection, after saying why.
        let r = s(ask(format!(
            "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n",
            1 << 30
        )
        .as_bytes()));
        assert_eq!(
            r,
            "-ERR Protocol error: invalid bulk length: 1073741824 (at most 524288 bytes)\r\n"
        );
        assert_eq!(ask(b"PING\r\n"), b"", "closed");
    });
}

#[test]
fn concurrent_writers_share_commits() {
    with_service("group", |_, cstack| {
        let stack = cstack.clone();
        let tasks: Vec<_> = (0..20)
            .map(|c| {
                let stack = stack.clone();
                mkernel::spawn(move || {
                    let conn =
                        TcpStream::connect(&stack, "10.0.0.1:6379".parse().unwrap()).unwrap();
                    let mut buf = [0u8; 64];
                    for i in 0..25 {
                        let k = format!("c{c}k{i}");
                        conn.write_all(&cmd(&[b"SET", k.as_bytes(), b"v"])).unwrap();
                        let n = conn.read(&mut buf).unwrap();
                        assert_eq!(&buf[..n], b"+OK\r\n");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.join().unwrap();
        }
        let conn = TcpStream::connect(&stack, "10.0.0.1:6379".parse().unwrap()).unwrap();
        conn.write_all(&cmd(&[b"INFO", b"persistence"])).unwrap();
        let mut info = Vec::new();
        let mut buf = [0u8; 4096];
        while count_replies(&info) < 1 {
            let n = conn.read(&mut buf).unwrap();
            info.extend_from_slice(&buf[..n]);
        }
        let info = String::from_utf8(info).unwrap();
        let field = |name: &str| -> u64 {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        let (commits, ops) = (field("commits"), field("ops_committed"));
        assert_eq!(ops, 500);
        // 20 clients, each waiting for its reply: their writes share
        // commits.
        assert!(commits * 4 <= ops, "{commits} commits for {ops} writes");
    });
}
