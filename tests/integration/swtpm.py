"""A software TPM (swtpm) for a test, on a Unix socket in its own state directory. Stopping
and starting it on the same directory is a reboot: seeds and NV stay, PCRs and loaded objects go."""
import os
import socket
import subprocess
import time


class SoftwareTpm:
    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.sock = os.path.join(state_dir, "swtpm.sock")
        self.tcti = f"swtpm:path={self.sock}"
        self.proc = None
        os.makedirs(state_dir, exist_ok=True)
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={self.state_dir}",
             "--server", f"type=unixio,path={self.sock}", "--ctrl", f"type=unixio,path={self.sock}.ctrl",
             "--flags", "not-need-init,startup-clear", "--seccomp", "action=none",
             "--log", f"file={os.path.join(self.state_dir, 'swtpm.log')}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:  # listening, not merely bound
            try:
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.connect(self.sock)
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"swtpm did not start in {self.state_dir}")
                time.sleep(0.01)

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def env(self):
        return dict(os.environ, OUTPOST_TPM_TCTI=self.tcti)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
