//! TLS modes against a real PostgreSQL 15 server with a throwaway CA.

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

use crate::db::connect::{ConnectError, ConnectionSpec};

/// A PostgreSQL server in a temp dir, run as the `postgres` user, listening
/// on 127.0.0.1 only. Dropping it stops the server (immediate mode).
struct TestServer {
    _dir: tempfile::TempDir,
    bindir: PathBuf,
    data: PathBuf,
    port: u16,
    uid: u32,
    gid: u32,
    /// PEM file of the CA that signed the server certificate.
    ca_file: PathBuf,
    /// PEM file of an unrelated CA.
    other_ca_file: PathBuf,
}

fn postgres_ids() -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let mut fields = line.split(':').skip(2);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

fn make_ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (params.self_signed(&key).unwrap(), key)
}

impl TestServer {
    /// Fails (never skips) when the machine cannot run the server.
    fn start() -> TestServer {
        let bindir = crate::embedded::find_binaries()
            .unwrap_or_else(|e| panic!("this test needs PostgreSQL: {e}"))
            .bindir;
        // PostgreSQL refuses root: as root, run it as the postgres user.
        let (uid, gid) = if nix::unistd::geteuid().is_root() {
            postgres_ids().expect("running as root needs a `postgres` user for the server")
        } else {
            (
                nix::unistd::getuid().as_raw(),
                nix::unistd::getgid().as_raw(),
            )
        };
        let dir = tempfile::tempdir().unwrap();
        chown(dir.path(), Some(uid), Some(gid)).unwrap();
        let data = dir.path().join("data");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();

        let cwd = dir.path().to_owned();
        let run = |args: &[&str]| {
            let status = Command::new(bindir.join(args[0]))
                .args(&args[1..])
                .env("LC_ALL", "C")
                .uid(uid)
                .gid(gid)
                .current_dir(&cwd)
                .status()
                .unwrap();
            assert!(status.success(), "{args:?} failed");
        };
        let data_str = data.to_str().unwrap();
        run(&[
            "initdb",
            "-D",
            data_str,
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
        ]);

        let (ca, ca_key) = make_ca("crondeck test CA");
        let (other_ca, _) = make_ca("unrelated CA");
        let server_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server_cert = params.signed_by(&server_key, &ca, &ca_key).unwrap();

        let write = |name: &str, text: &str, mode: u32| {
            let path = data.join(name);
            fs::write(&path, text).unwrap();
            chown(&path, Some(uid), Some(gid)).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            path
        };
        write("server.crt", &server_cert.pem(), 0o644);
        write("server.key", &server_key.serialize_pem(), 0o600);
        let ca_file = write("test-ca.crt", &ca.pem(), 0o644);
        let other_ca_file = write("other-ca.crt", &other_ca.pem(), 0o644);
        write(
            "pg_hba.conf",
            "local all all trust\nhost all all 127.0.0.1/32 trust\n",
            0o600,
        );
        let mut conf = fs::read_to_string(data.join("postgresql.conf")).unwrap();
        conf.push_str(&format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nfsync = off\n",
            dir.path().display()
        ));
        write("postgresql.conf", &conf, 0o600);

        let server = TestServer {
            bindir: bindir.clone(),
            data: data.clone(),
            _dir: dir,
            port,
            uid,
            gid,
            ca_file,
            other_ca_file,
        };
        // From here on the guard stops the server even if start-up half works.
        let log = data.join("server.log");
        run(&[
            "pg_ctl",
            "-D",
            data_str,
            "-l",
            log.to_str().unwrap(),
            "-w",
            "start",
        ]);
        server
    }

    fn spec(&self, params: &str) -> ConnectionSpec {
        let env = |key: &str| (key == "USER").then(|| "postgres".to_owned());
        ConnectionSpec::parse(
            &format!("port={} dbname=postgres {params}", self.port),
            &env,
        )
        .unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = Command::new(self.bindir.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .uid(self.uid)
            .gid(self.gid)
            .status();
    }
}

async fn uses_ssl(spec: &ConnectionSpec) -> Result<bool, ConnectError> {
    let client = spec.connect().await?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    Ok(row.get(0))
}

#[tokio::test]
async fn tls_modes_against_real_server() {
    let server = TestServer::start();
    let ca = server.ca_file.display().to_string();
    let other_ca = server.other_ca_file.display().to_string();
    // "localhost" is the certificate's name; hostaddr keeps traffic on 127.0.0.1.
    let localhost = "host=localhost hostaddr=127.0.0.1";

    let ok = |params: String| {
        let spec = server.spec(&params);
        async move {
            match uses_ssl(&spec).await {
                Ok(ssl) => ssl,
                Err(e) => panic!("{params}: {e}"),
            }
        }
    };
    let fails = |params: String| {
        let spec = server.spec(&params);
        async move {
            match spec.connect().await {
                Ok(_) => panic!("{params}: connected but should not have"),
                Err(e) => e.to_string(),
            }
        }
    };

    assert!(!ok("host=127.0.0.1 sslmode=disable".into()).await);
    assert!(ok("host=127.0.0.1 sslmode=prefer".into()).await);
    assert!(ok("host=127.0.0.1 sslmode=require".into()).await);
    assert!(ok(format!("{localhost} sslmode=verify-full sslrootcert={ca}")).await);
    assert!(ok(format!("host=127.0.0.1 sslmode=verify-ca sslrootcert={ca}")).await);
    // libpq: require with a root cert behaves like verify-ca.
    assert!(ok(format!("host=127.0.0.1 sslmode=require sslrootcert={ca}")).await);

    let msg = fails(format!(
        "host=127.0.0.1 sslmode=verify-full sslrootcert={ca}"
    ))
    .await;
    assert!(msg.contains("error performing TLS handshake"), "{msg}");
    assert!(msg.contains("not valid for name"), "{msg}");
    assert!(msg.contains("sslmode=verify-ca"), "{msg}");
    eprintln!("example error: {msg}");

    let msg = fails(format!("{localhost} sslmode=verify-full")).await;
    assert!(msg.contains("UnknownIssuer"), "{msg}");
    assert!(msg.contains("point sslrootcert at the CA"), "{msg}");

    let msg = fails(format!(
        "host=127.0.0.1 sslmode=require sslrootcert={other_ca}"
    ))
    .await;
    assert!(msg.contains("UnknownIssuer"), "{msg}");
    let msg = fails(format!(
        "host=127.0.0.1 sslmode=verify-ca sslrootcert={other_ca}"
    ))
    .await;
    assert!(msg.contains("UnknownIssuer"), "{msg}");
    eprintln!("example error: {msg}");

    // Sockets ignore sslmode, as in libpq.
    let socket = server._dir.path().display().to_string();
    assert!(!ok(format!("host={socket} sslmode=verify-full")).await);
    // The embedded server's path: a plain Config over the socket.
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(server._dir.path())
        .port(server.port)
        .user("postgres")
        .dbname("postgres");
    assert!(!uses_ssl(&ConnectionSpec::from_config(config))
        .await
        .unwrap());
}
