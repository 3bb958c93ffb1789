"""client/python/examples/walkthrough.py (the installed package + matplotlib)
against the C++ CLI: for the factor, nielsen and digits presets both write
<preset>.csv in the same layout from the same server, and every value must
be equal; the walkthrough's figures must exist as PNGs."""

import csv
import os
import pathlib
import subprocess
import sys
import tempfile
import unittest

from live_server import LiveServer

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
WALKTHROUGH = REPO / "client" / "python" / "examples" / "walkthrough.py"
PRESETS = ("factor", "nielsen", "digits")
FIGURES = ["factor", "nielsen_loss", "nielsen_attenuation", "nielsen_output", "digits_loss",
           "digits_accuracy", "digits_attenuation", "digits_activations", "digits_saturation"]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def cell(text):
    """A number when the cell is one (the CLI writes %.17g, which round-trips)."""
    try:
        return float(text)
    except ValueError:
        return text


class WalkthroughTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cli = os.environ.get("SATLAB_CLI_BIN")
        if not cli or not os.access(cli, os.X_OK):
            raise RuntimeError(f"SATLAB_CLI_BIN must name the satlab CLI binary, got {cli!r}")
        cls.server = LiveServer(os.environ["SATLAB_SERVER_BIN"]).start()
        cls.tmp = tempfile.TemporaryDirectory(prefix="satlab-walkthrough-")
        cls.cli_out = pathlib.Path(cls.tmp.name) / "cli"
        cls.py_out = pathlib.Path(cls.tmp.name) / "py"
        try:
            for preset in PRESETS:
                subprocess.run([cli, "--server", cls.server.address, "--quiet", "experiment", preset,
                                "--out", str(cls.cli_out), "--no-figures"],
                               check=True, capture_output=True, text=True, timeout=300)
            r = subprocess.run([sys.executable, str(WALKTHROUGH), "--server", cls.server.address,
                                "--out", str(cls.py_out)], capture_output=True, text=True, timeout=300)
            cls.walkthrough_output = r.stdout + r.stderr
            if r.returncode != 0:
                raise RuntimeError(f"walkthrough.py exited {r.returncode}:\n{cls.walkthrough_output}")
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.tmp.cleanup()

    def test_UsesTheInstalledPackage(self):
        import satlab
        self.assertTrue(pathlib.Path(satlab.__file__).resolve().is_relative_to(pathlib.Path(sys.prefix).resolve()))

    def test_Csv_EqualsTheCli(self):
        for preset in PRESETS:
            with self.subTest(preset=preset):
                cli = read_csv(self.cli_out / f"{preset}.csv")
                py = read_csv(self.py_out / f"{preset}.csv")
                self.assertEqual(py[0], cli[0], "header")
                self.assertEqual(len(py), len(cli), "rows")
                self.assertGreater(len(cli), 30)
                for i, (a, b) in enumerate(zip(py[1:], cli[1:])):
                    self.assertEqual([cell(x) for x in a], [cell(x) for x in b], f"{preset}.csv row {i + 1}")

    def test_Numbers_AreTheDocumentedOnes(self):
        # docs/saturation.md's tables, through the walkthrough's own CSV.
        rows = {(r[1], int(r[2])): r for r in read_csv(self.py_out / "nielsen.csv")[1:]}
        self.assertAlmostEqual(float(rows[("mse from w=2 b=2", 300)][4]), 0.0205737, places=7)
        self.assertAlmostEqual(float(rows[("bce from w=2 b=2", 300)][4]), 0.0120814, places=7)
        self.assertAlmostEqual(float(rows[("mse from w=2 b=2", 150)][4]), 0.435634, places=6)
        digits = {(r[1], int(r[2])): r for r in read_csv(self.py_out / "digits.csv")[1:]}
        self.assertAlmostEqual(float(digits[("softmax+cce", 30)][5]), 0.998331, places=6)
        self.assertAlmostEqual(float(digits[("sigmoid+mse", 30)][4]), 0.0377514, places=7)
        factor = {round(float(r[0]), 3): r for r in read_csv(self.py_out / "factor.csv")[1:]}
        self.assertAlmostEqual(float(factor[0.95][2]), 0.045125, places=9)
        self.assertIn("212", self.walkthrough_output)  # mse from (2, 2): epochs to half loss

    def test_Figures_WrittenAsPng(self):
        for name in FIGURES:
            path = self.py_out / f"{name}.png"
            with self.subTest(figure=name):
                self.assertTrue(path.is_file(), path)
                data = path.read_bytes()
                self.assertEqual(data[:8], b"\x89PNG\r\n\x1a\n")
                self.assertGreater(len(data), 10_000)


if __name__ == "__main__":
    unittest.main()
