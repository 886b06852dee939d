# Board entry point: runs the BPIIoT firmware and guards everything, because an
# uncaught traceback would print into the serial stream (MicroPython prints them to
# stdout) and corrupt the link.
import sys
import time

UNIX = sys.platform in ("linux", "darwin")
started = time.ticks_ms()


def _report(exc):
    # Tracebacks go to stderr on the Unix port; on boards stderr is the stream, so
    # nothing is printed there (the app already sent a log frame where it could).
    if UNIX:
        try:
            sys.stderr.write("bpiiot: firmware crashed\n")
            sys.print_exception(exc, sys.stderr)
        except Exception:
            pass


def _run():
    import os

    try:
        # Set by the app before a watchdog-safe reboot into the REPL (for flashing).
        os.remove("bpiiot_repl_once")
        return
    except OSError:
        pass
    try:
        from bpiiot_fw import app, hal

        if app.main() == "repl":
            hal.to_repl()
    except SystemExit:
        raise
    except BaseException as exc:  # nothing may reach the stream
        _report(exc)
        try:
            import micropython

            micropython.kbd_intr(3)
        except Exception:
            pass
        # A crash after a good run is a fault: reboot. A crash at boot would loop,
        # so stay in the REPL where the board can be reflashed.
        if time.ticks_diff(time.ticks_ms(), started) > 10000:
            if UNIX:
                sys.exit(75)
            import machine

            machine.reset()
        if UNIX:
            sys.exit(1)


_run()
