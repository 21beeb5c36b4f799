import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Never let a test reach a real Gemini endpoint or a developer's key.
for _var in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"):
    os.environ.pop(_var, None)
# ... nor a developer's real OS keyring (tests that need one patch aiflat_gui.ai.keys).
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
