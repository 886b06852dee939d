# What runs on the board, and nothing else: the single list of shipped modules.
#
# - `bpiiot flash` compiles exactly these files to .mpy and copies them (plus main.py).
# - To freeze them into a MicroPython image instead (their code and interned names then
#   live in flash, not in RAM), add to your board's manifest:
#       include("/path/to/bpiiot/board/micropython/manifest.py")
#   build MicroPython (`make BOARD=RPI_PICO FROZEN_MANIFEST=...`), flash the image, and
#   copy only main.py and bpiiot.json to the board (see README, "Hardware notes").
#
# Host-only code stays out: codec_host (the host side's checks of board frames, used by
# the tests) and the plain-bytecode DSP twin (tools/bench/dsp_ref.py).
package(
    "bpiiot_fw",
    files=(
        "acquire.py",
        "app.py",
        "codec.py",
        "commands.py",
        "crc32.py",
        "dsp.py",
        "hal.py",
        "hal_board.py",
        "reports.py",
        "sensors.py",
        "sensors_adxl345.py",
        "sensors_analog.py",
        "sensors_signal.py",
        "sensors_signal_more.py",
        "sensors_temp.py",
        "startup.py",
        "store.py",
    ),
    base_path=".",
)
