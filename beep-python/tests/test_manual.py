"""The PyVortex manual's client and listener examples
(shared/spec/pyvortex-manual.txt), run as the manual writes them with
`import vortex` (the import line is PyVortex's own).

What the test changes, and only that: the port "1602" becomes a free
port, the listener's host "" becomes "127.0.0.1" (tests talk to the
loopback address only), the profile URI the manual leaves empty ("") gets
a value, the manual's truncated `register_profile (ctx, "",` call gets its
`frame_received=default_frame_received)` ending, the client's steps are
put one after the other, and step 3's `return False` (the manual's text
is from a function) becomes the `sys.exit (-1)` of its other steps.
"""

import socket
import subprocess
import sys
import signal
import time

import pytest

import vortex

PROFILE = "http://example.org/beep/manual"

CLIENT = '''
# import base vortex module
import vortex

# import sys (sys.exit)
import sys

# create a vortex.Ctx object
ctx = vortex.Ctx ()

# now, init the context and check status
if not ctx.init ():
   print ("ERROR: Unable to init ctx, failed to continue")
   sys.exit (-1)

# ctx created

# create a BEEP session connected to localhost:1602
conn = vortex.Connection (ctx, "localhost", "1602")

# check connection status
if not conn.is_ok ():
   print ("ERROR: Failed to create connection with 'localhost':1602")
   sys.exit (-1)

# create a channel running a user defined profile
channel = conn.open_channel (0, "")

if not channel:
    print ("ERROR: Expected to find proper channel creation, but error found:")
    # get first message
    (err_code, err_msg) = conn.pop_channel_error ()
    while err_code:
         print ("ERROR: Found error message: " + str (error_code) + ": " + error_msg)

         # next message
         (err_code, err_msg) = conn.pop_channel_error ()
    return False

# channel created

if channel.send_msg ("This is a test", 14) is None:
    print ("ERROR: Failed to send test message, error found: ")

    # get first message
    err = conn.pop_channel_error ()
    while err:
         print ("ERROR: Found error message: " + str (err[0]) + ": " + err[1])

         # next message
         err = conn.pop_channel_error ()
    sys.exit (-1)

def frame_received (conn, channel, frame, data):
    # messages received asynchronously
    print ("Frame received, type: " + frame.type)
    print ("Frame content: " + frame.payload)

channel.set_frame_received (frame_received)
'''

LISTENER = '''
# import base vortex module
import vortex

# import sys (sys.exit)
import sys

# create a vortex.Ctx object
ctx = vortex.Ctx ()

# now, init the context and check status
if not ctx.init ():
   print ("ERROR: Unable to init ctx, failed to continue")
   sys.exit (-1)

# ctx created

def default_frame_received (conn, channel, frame, data):

    print ("Frame content received: " + frame.payload)

    # reply in the case of MSG received
    if frame.type == 'MSG':
       # reply doing an echo
       channel.send_rpy (frame.payload, frame.payload_size, frame.msg_no)

    # end default_frame_received

# register support for a profile
vortex.register_profile (ctx, "",
                         frame_received=default_frame_received)

# start listener and check status
listener = vortex.create_listener (ctx, "", "1602")

if not listener.is_ok ():
   print ("ERROR: failed to start listener, error was was: " + listener.error_msg)
   sys.exit (-1)

# wait for requests
vortex.wait_listeners (ctx, unlock_on_signal=True)
'''


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def adapt(source, port):
    source = source.replace('"1602"', '"%s"' % port).replace("':1602", "':%s" % port)
    source = source.replace('register_profile (ctx, ""', 'register_profile (ctx, "%s"' % PROFILE)
    source = source.replace('open_channel (0, "")', 'open_channel (0, "%s")' % PROFILE)
    source = source.replace('create_listener (ctx, "",', 'create_listener (ctx, "127.0.0.1",')
    source = source.replace("    return False\n", "    sys.exit (-1)\n")
    return source


def test_manual_client_and_listener(tmp_path):
    port = free_port()
    (tmp_path / "listener.py").write_text(adapt(LISTENER, port))
    # The manual's client ends once its handler is set; give the reply a
    # moment to arrive before the interpreter exits.
    (tmp_path / "client.py").write_text(adapt(CLIENT, port) + "\nimport time\ntime.sleep (0.5)\n")
    listener = subprocess.Popen([sys.executable, str(tmp_path / "listener.py")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ctx = vortex.Ctx()
        deadline = time.monotonic() + 15
        while not vortex.Connection(ctx, "127.0.0.1", port, timeout=1).is_ok():
            assert listener.poll() is None, listener.communicate()
            assert time.monotonic() < deadline, "the manual's listener did not start"
            time.sleep(0.05)
        client = subprocess.run([sys.executable, str(tmp_path / "client.py")],
                                capture_output=True, text=True, timeout=30)
        assert client.returncode == 0, client.stdout + client.stderr
        assert "ERROR" not in client.stdout
        # Ctrl-C ends the listener's wait_listeners (unlock_on_signal).
        listener.send_signal(signal.SIGINT)
        out, err = listener.communicate(timeout=15)
        assert listener.returncode == 0, err
        assert "Frame content received: This is a test" in out
        assert "Traceback" not in err
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait(10)


def test_manual_examples_match_the_manual():
    """The code above is the manual's, line for line (but the completed
    register_profile call and the client's joined steps)."""
    import pathlib

    manual = None
    for parent in pathlib.Path(__file__).resolve().parents:
        candidate = parent / "shared" / "spec" / "pyvortex-manual.txt"
        if candidate.exists():
            manual = candidate.read_text()
            break
    if manual is None:
        pytest.skip("shared/spec/pyvortex-manual.txt is not beside the repository")
    for line in (CLIENT + LISTENER).splitlines():
        if line.strip() and "frame_received=default_frame_received)" not in line:
            assert line.rstrip() in manual, line
