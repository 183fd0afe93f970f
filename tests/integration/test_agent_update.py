"""The agent updating itself: outpost-supervisor runs outpostd from its A/B slots, the agent
fetches a newer signed build from the update repository, hands it over and exits, the supervisor
installs it, starts it on trial and commits it once healthy, or restores the previous build when
it is not."""
import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from agent import BIN_DIR, free_port
from update_repo import RepoServer, UpdateRepo, must

LIB_DIR = os.path.join(BIN_DIR, "..", "lib")


class AgentUpdateTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="outpost-agent-update-")
        self.repo = UpdateRepo(self.tmp)
        self.slots = os.path.join(self.tmp, "slots")
        self.models = os.path.join(self.tmp, "models")
        os.makedirs(self.models)
        self.server = RepoServer(self.repo.dir)
        self.port = free_port()
        self.supervisor = None

    def tearDown(self):
        if self.supervisor and self.supervisor.poll() is None:
            self.supervisor.kill()
            self.supervisor.wait()
        self.server.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def build(self, version, broken=False, hangs=False):
        """A signed agent package: the real outpostd, a build that exits at once, or one that
        runs but never becomes healthy."""
        src = os.path.join(self.tmp, f"agent-{version}")
        os.makedirs(os.path.join(src, "bin"))
        entry = os.path.join(src, "bin", "outpostd")
        if hangs:
            with open(entry, "w") as f:
                f.write("#!/bin/sh\nexec sleep 1000\n")
        elif broken:
            with open(entry, "w") as f:
                f.write("#!/bin/sh\necho 'this build cannot start' >&2\nexit 3\n")
        else:
            shutil.copy(os.path.join(BIN_DIR, "outpostd"), entry)
        with open(os.path.join(src, "manifest.json"), "w") as f:
            json.dump({"name": "outpostd", "version": version, "runtime": "agent", "model_file": "bin/outpostd"}, f)
        pkg = os.path.join(self.tmp, f"outpostd-{version}.opkg")
        must("pack", src, "-o", pkg)
        must("sign", pkg, "--key", self.repo.keys["signer"])
        return pkg

    def slot_state(self):
        path = os.path.join(self.slots, "outpostd", ".slots.json")
        if not os.path.exists(path):
            return {}
        with open(path) as f:
            return json.load(f)

    def healthy(self):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            c.request("GET", "/v2/health/ready")
            return c.getresponse().status == 200
        except OSError:
            return False

    def start_supervisor(self, cfg=None, trial_timeout="30", options=()):
        args = [os.path.join(BIN_DIR, "outpost-supervisor"), *options, "--slots", self.slots, "--trust-file", self.repo.trust,
                "--health-url", f"http://127.0.0.1:{self.port}/v2/health/ready", "--trial-timeout-secs", trial_timeout,
                "--trial-stable-secs", "1", "--", "--model-repository", self.models, "--http-port", str(self.port),
                "--grpc-port", "0", "--trust-file", self.repo.trust, "--auth-dir", os.path.join(self.tmp, "auth")]
        if cfg:
            args += ["--config", cfg]
        self.log = open(os.path.join(self.tmp, "supervisor.log"), "a")
        # The agent finds ONNX Runtime in the build tree's lib/, named to the supervisor as a
        # library directory: whatever LD_LIBRARY_PATH the supervisor has, the agent gets only that.
        args[1:1] = ["--library-dir", LIB_DIR]
        self.supervisor = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                           env={**os.environ, "LD_LIBRARY_PATH": "/nonexistent"})

    def child(self):
        try:
            with open(f"/proc/{self.supervisor.pid}/task/{self.supervisor.pid}/children") as f:
                children = f.read().split()
            return int(children[0]) if children else None
        except OSError:
            return None

    def running_build(self):
        """The slot version of the outpostd the supervisor runs now."""
        with open(f"/proc/{self.supervisor.pid}/task/{self.supervisor.pid}/children") as f:
            children = f.read().split()
        self.assertEqual(len(children), 1, children)
        # It runs from a private copy (<slots>/.run/<version>-XXXXXX/bin/outpostd), told its slot.
        with open(f"/proc/{children[0]}/environ", "rb") as f:
            env = dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)
        exe = os.readlink(f"/proc/{children[0]}/exe")
        version = env[b"OUTPOST_AGENT_SLOT_VERSION"].decode()
        self.assertTrue(os.path.basename(os.path.dirname(os.path.dirname(exe))).startswith(version + "-"), exe)
        return version

    def wait_for(self, predicate, what, timeout=90):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate():
                return
            if self.supervisor.poll() is not None:
                self.fail(f"the supervisor exited with {self.supervisor.returncode} waiting for {what}")
            time.sleep(0.1)
        self.fail(f"timed out waiting for {what}; slots: {self.slot_state()}")

    def check(self):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            with open(os.path.join(self.tmp, "auth", "admin.key")) as f:
                key = f.read().strip()
            c.request("POST", "/v2/updates/check", headers={"Authorization": "Bearer " + key})
            c.getresponse().read()
        except (OSError, http.client.HTTPException):
            pass  # the agent may end the connection as it exits into the new build

    def publish_and_commit(self, version):
        """Publishes a good build, asks the agent to check, and waits until it runs committed."""
        must("repo", "add", self.repo.dir, self.build(version), "--kind", "agent",
             "--targets-key", self.repo.keys["targets"])
        self.repo.publish()
        self.check()
        self.wait_for(lambda: self.slot_state().get("committed") == version and self.healthy(),
                      f"{version} to commit")
        self.assertEqual(self.running_build(), version)

    def test_new_build_commits_and_a_broken_one_rolls_back(self):
        must("install", self.build("0.1.0"), "--repository", self.slots, "--trust", self.repo.trust)
        cfg = os.path.join(self.tmp, "agent.json")
        with open(cfg, "w") as f:
            json.dump({"update_url": self.server.url, "update_root": self.repo.root,
                       "update_check_on_start": False, "update_canary_secs": 0}, f)
        self.start_supervisor(cfg)
        try:
            self.wait_for(self.healthy, "the first build")
            self.assertEqual(self.running_build(), "0.1.0")

            self.publish_and_commit("0.2.0")
            self.assertEqual(self.slot_state()["previous"], "0.1.0")

            broken = self.build("0.3.0", broken=True)
            must("repo", "add", self.repo.dir, broken, "--kind", "agent", "--targets-key", self.repo.keys["targets"])
            self.repo.publish()
            self.check()
            self.wait_for(lambda: "0.3.0" in self.slot_state().get("failed", []) and self.healthy(),
                          "0.3.0 to roll back")
            state = self.slot_state()
            self.assertEqual((state["committed"], state["trial"]), ("0.2.0", ""))
            self.assertIn("exited with status 3 before it was healthy", state["last_failure"])
            self.assertEqual(self.running_build(), "0.2.0")
            # Two slots: 0.3.0 took the one 0.1.0 held, and failed.
            self.assertEqual(sorted(n for n in os.listdir(os.path.join(self.slots, "outpostd")) if n[0] != "."),
                             ["0.2.0"])
            self.assertEqual(state["previous"], "")
            # The failed build is not staged again.
            self.check()
            time.sleep(1)
            self.assertEqual(self.running_build(), "0.2.0")
        finally:
            self.supervisor.send_signal(signal.SIGTERM)
            self.assertEqual(self.supervisor.wait(timeout=60), 0)
            self.log.close()

    def test_the_agent_runs_as_its_own_user_and_cannot_write_its_slots(self):
        """With --agent-user the agent runs unprivileged; the slots are the supervisor's alone:
        the agent cannot write them, hands a new build over in its own directory, and the
        supervisor verifies it there before installing it (something else left there is
        refused)."""
        import pwd
        nobody = pwd.getpwnam("nobody")
        as_nobody = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
        os.chmod(self.tmp, 0o755)
        os.makedirs(os.path.join(self.tmp, "auth"))
        for d in (self.models, os.path.join(self.tmp, "auth")):
            os.chown(d, nobody.pw_uid, nobody.pw_gid)
        must("install", self.build("0.1.0"), "--repository", self.slots, "--trust", self.repo.trust)
        cfg = os.path.join(self.tmp, "agent.json")
        with open(cfg, "w") as f:
            json.dump({"update_url": self.server.url, "update_root": self.repo.root,
                       "update_check_on_start": False, "update_canary_secs": 0}, f)
        self.start_supervisor(cfg, options=["--agent-user", "nobody"])
        try:
            self.wait_for(self.healthy, "the first build")
            with open(f"/proc/{self.child()}/status") as f:
                uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
            self.assertEqual(set(uids), {str(nobody.pw_uid)})
            handoff = os.path.join(self.slots, ".incoming")
            self.assertEqual(os.stat(handoff).st_uid, nobody.pw_uid)
            for target in (os.path.join(self.slots, "planted"), os.path.join(self.slots, "outpostd", "planted"),
                           os.path.join(self.slots, "outpostd", "0.1.0", "bin", "planted")):
                r = subprocess.run(as_nobody + ["touch", target], capture_output=True, text=True)
                self.assertNotEqual(r.returncode, 0, f"the agent's user wrote {target}")
                self.assertIn("Permission denied", r.stderr)
            r = subprocess.run(as_nobody + ["sh", "-c", f"echo 'not a package' > {handoff}/outpostd.opkg"])
            self.assertEqual(r.returncode, 0)
            os.kill(self.child(), signal.SIGKILL)
            self.wait_for(lambda: "was refused" in open(os.path.join(self.tmp, "supervisor.log")).read(),
                          "the planted hand-off to be refused")
            self.wait_for(self.healthy, "the build to restart")
            self.assertEqual(self.running_build(), "0.1.0")
            self.assertEqual(os.listdir(handoff), [])
            self.assertEqual(self.slot_state().get("trial", ""), "")

            self.publish_and_commit("0.2.0")
            self.assertEqual(os.stat(os.path.join(self.slots, "outpostd", "0.2.0")).st_uid, 0)
            self.assertEqual(os.listdir(handoff), [])
        finally:
            self.supervisor.send_signal(signal.SIGTERM)
            self.assertEqual(self.supervisor.wait(timeout=60), 0)
            self.log.close()

    def test_the_fleet_decides_which_build_runs(self):
        """Under a fleet server, the agent installs the build the desired state names (not the
        repository's newest), through the same supervisor trial, and reports it."""
        from fleet import FleetServer, make_token
        must("install", self.build("0.1.0"), "--repository", self.slots, "--trust", self.repo.trust)
        for version in ("0.2.0", "0.3.0"):
            must("repo", "add", self.repo.dir, self.build(version), "--kind", "agent",
                 "--targets-key", self.repo.keys["targets"])
        self.repo.publish()
        db = "sqlite:" + os.path.join(self.tmp, "fleet.db")
        token = make_token(db)
        fleet = FleetServer(db, ["--poll-secs", "1"])
        try:
            status, body = fleet.op(token, "POST", "/api/v1/enrollment-tokens", {"tags": {"ring": "0"}})
            cfg = os.path.join(self.tmp, "agent.json")
            with open(cfg, "w") as f:
                json.dump({"update_url": self.server.url, "update_root": self.repo.root,
                           "update_check_on_start": False, "update_canary_secs": 0,
                           "fleet_url": f"http://127.0.0.1:{fleet.port}",
                           "fleet_enrollment_token": body["token"]}, f)
            self.start_supervisor(cfg)

            def device():
                devices = fleet.op(token, "GET", "/api/v1/devices")[1]
                return fleet.op(token, "GET", "/api/v1/devices/" + devices[0]["id"])[1] if devices else None

            self.wait_for(lambda: (device() or {}).get("agent_version") == "0.1.0", "enrollment")
            # Nothing deployed: the newest build (0.3.0) in the repository is not installed.
            time.sleep(2)
            self.assertEqual(self.running_build(), "0.1.0")
            status, _ = fleet.op(token, "PUT", "/api/v1/deployments/agents",
                                 {"selector": {"ring": "0"}, "packages": {"outpostd": "0.2.0"}})
            self.assertEqual(status, 200)
            self.wait_for(lambda: self.slot_state().get("committed") == "0.2.0" and self.healthy(),
                          "0.2.0 to commit")
            self.assertEqual(self.running_build(), "0.2.0")
            self.wait_for(lambda: (device() or {}).get("agent_version") == "0.2.0"
                          and device()["deployments"].get("agents", {}).get("status") == "installed",
                          "the device to report 0.2.0")
        finally:
            self.supervisor.send_signal(signal.SIGTERM)
            self.assertEqual(self.supervisor.wait(timeout=60), 0)
            self.log.close()
            fleet.close()

    def test_trial_interrupted_twice_is_refused(self):
        """Power lost twice while a build is on trial (supervisor and build SIGKILLed): the
        third start refuses that build and runs the committed one."""
        must("install", self.build("0.1.0"), "--repository", self.slots, "--trust", self.repo.trust)
        must("install", self.build("0.2.0", hangs=True), "--repository", self.slots, "--trust", self.repo.trust)
        with open(os.path.join(self.slots, "outpostd", ".slots.json"), "w") as f:
            json.dump({"committed": "0.1.0", "previous": "", "trial": "0.2.0", "trial_attempts": 0,
                       "failed": [], "last_failure": ""}, f)
        for attempt in (1, 2):
            self.start_supervisor(trial_timeout="120")
            # The build execs sleep(1): its child is the trial once the attempt is recorded.
            self.wait_for(lambda: self.slot_state().get("trial_attempts") == attempt and self.child() is not None,
                          f"trial {attempt} to start")
            child = self.child()
            self.supervisor.kill()
            self.supervisor.wait()
            os.kill(child, signal.SIGKILL)
        self.start_supervisor()
        try:
            self.wait_for(self.healthy, "the committed build after the refused trial")
            state = self.slot_state()
            self.assertEqual((state["committed"], state["trial"], state["failed"]), ("0.1.0", "", ["0.2.0"]))
            self.assertIn("interrupted twice", state["last_failure"])
            self.assertEqual(self.running_build(), "0.1.0")
            self.assertFalse(os.path.exists(os.path.join(self.slots, "outpostd", "0.2.0")))
        finally:
            self.supervisor.send_signal(signal.SIGTERM)
            self.assertEqual(self.supervisor.wait(timeout=60), 0)
            self.log.close()

    def test_a_library_planted_in_the_slot_is_not_loaded(self):
        """Files beside a signed build (a library the loader would find through the binary's
        $ORIGIN/../lib before the system's) do not reach the agent: it runs from a private
        copy of exactly its signed files, executed through the descriptor that was verified."""
        must("install", self.build("0.1.0"), "--repository", self.slots, "--trust", self.repo.trust)
        marker = os.path.join(self.tmp, "planted-library-ran")
        src = os.path.join(self.tmp, "planted.c")
        with open(src, "w") as f:
            f.write('#include <stdio.h>\n__attribute__((constructor)) static void run(void) {'
                    f' FILE* f = fopen("{marker}", "w"); if (f) fclose(f); }}\n')
        lib = os.path.join(self.slots, "outpostd", "0.1.0", "lib")
        os.makedirs(lib)
        for name in ("libz.so.1", "libonnxruntime.so.1"):
            subprocess.run(["cc", "-shared", "-fPIC", "-o", os.path.join(lib, name), src], check=True)
        self.start_supervisor()
        try:
            self.wait_for(self.healthy, "the build")
            self.assertFalse(os.path.exists(marker), "the planted library ran inside the agent")
            pid = self.child()
            exe = os.readlink(f"/proc/{pid}/exe")
            self.assertTrue(exe.startswith(os.path.join(self.slots, ".run", "0.1.0-")), exe)
            with open(f"/proc/{pid}/maps") as f:
                maps = f.read()
            self.assertNotIn(lib, maps)
            self.assertIn(os.path.realpath(os.path.join(LIB_DIR, "libonnxruntime.so.1")), maps)
            # The copy it runs from is read-only and holds only the signed files.
            run_dir = os.path.dirname(os.path.dirname(exe))
            self.assertEqual(sorted(os.listdir(run_dir)), ["bin"])
            self.assertEqual(os.stat(run_dir).st_mode & 0o777, 0o555)
            # Tampering with the slot itself is refused at the next start.
            with open(os.path.join(self.slots, "outpostd", "0.1.0", "bin", "outpostd"), "r+b") as f:
                f.seek(100)
                byte = f.read(1)
                f.seek(100)
                f.write(bytes([byte[0] ^ 0xff]))
            os.kill(pid, signal.SIGKILL)
            self.wait_for(lambda: "refused" in open(os.path.join(self.tmp, "supervisor.log")).read(),
                          "the altered build to be refused")
        finally:
            self.supervisor.send_signal(signal.SIGTERM)
            self.supervisor.wait(timeout=60)
        self.assertFalse(os.path.exists(marker))


if __name__ == "__main__":
    unittest.main()
