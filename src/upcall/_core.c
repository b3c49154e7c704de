// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * upcall._core: the per-event read path of the transports read from one
 * descriptor, in C: the queue-record ones (queue, fasync, eventfd), the
 * signal transport (its signalfd's siginfos, option `siginfos`) and the
 * netlink transport (its socket's datagrams, option `netlink_family`).
 *
 * One Reader per subscription. Reader.get() is what Subscription._get()
 * does per event; Reader.read() and Reader.poll() are Subscription.read()
 * and .poll() around it, bound to the subscription in their place (no
 * Python frame per event). Under the subscription's lock, check it is
 * readable, hand out buffered events or read(2) the queue at once (the
 * read-first logic), else mark it busy, poll(2) the transport's descriptor
 * and the close wake-up with the GIL released, read(2) up to `batch`
 * records, decode the `struct upcall_event` records into Event objects
 * (their slots filled directly), account the seqnos, and leave (finishing a
 * close() that came meanwhile). Reader.read_queue() is the one
 * read(2) + decode + accounting step, for the Python paths that read with
 * the lock held (on_event's watcher, wait()).
 *
 * The subscription's state is a State, the C base of upcall.Subscription:
 * its fields (_closed, _busy, _drained, _missed, _last_seqno, _received,
 * _lost, _signalled, _sigio, _foreign, _malformed, _overruns, _dispatcher)
 * are read and written here as C fields and by the Python code around it
 * (read_batch, close, async) as the attributes they are, so both share one
 * copy. Its lock (_lock) is a Lock, a recursive lock taken here with a C
 * call; its buffer (_buffer) stays a deque. A fasync Reader drains the
 * signalfd and counts its notifications itself, before each read of the
 * queue.
 *
 * The record reads happen with the GIL and the subscription's lock held
 * (the descriptor is non-blocking), so a close() from another thread, which
 * takes the lock before it closes the file, can never close it under a read.
 *
 * One exception, the blocking read (option `block`): a get() that waits for
 * ever waits in read(2) itself, as a bare blocking read loop does, instead
 * of poll(2) then read(2). For the queue (where the module unsubscribes) it
 * is a read(2) of the records, one system call per event; for eventfd, a
 * read(2) of the counter, then the records as usual. The descriptor is put
 * in blocking mode for it, and back in non-blocking mode by the next read
 * that must not wait (both only when the mode changes, under the lock).
 * That read runs without the lock: close() wakes it (it unsubscribes the
 * file, which the module then fails with EINVAL, or writes to the eventfd),
 * and closes the descriptor only once the last busy caller has left, so it
 * cannot be reused under the read. Records a queue read returns after
 * another thread read later ones are accounted as late (they fill the gap
 * that thread counted as lost).
 */

#define _GNU_SOURCE		/* recvmmsg() */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#ifndef Py_T_OBJECT_EX	/* before 3.12 */
#include <structmember.h>
#define Py_T_OBJECT_EX T_OBJECT_EX
#define Py_T_BOOL T_BOOL
#define Py_T_PYSSIZET T_PYSSIZET
#define Py_T_ULONGLONG T_ULONGLONG
#endif

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <pythread.h>

/* struct upcall_event (kmod/include/uapi/linux/upcall.h), 48 bytes. */
struct record {
	uint64_t seqno;
	uint64_t timestamp_ns;
	uint64_t value;
	uint32_t source;
	uint32_t flags;
	uint64_t reserved[2];
};

_Static_assert(sizeof(struct record) == 48, "struct upcall_event is 48 bytes");

#define RECORD_SIZE ((Py_ssize_t)sizeof(struct record))
/* Records per read(2): a larger request is read in several. */
#define CHUNK_RECORDS 1024
/* Records per blocking read(2), into a buffer of its own (on the stack). */
#define BLOCK_RECORDS 64
/* Event's slots, in Event.__slots__ order. */
enum { F_SEQNO, F_VALUE, F_SOURCE, F_TRANSPORT, F_TIMESTAMP, F_RECEIVED, F_SIGNO, F_FLAGS, NFIELDS };

static const char *const field_names[NFIELDS] = {
	"seqno", "value", "source", "transport", "timestamp_ns", "received_ns", "signo", "flags",
};

/*
 * A subscription's state: upcall.Subscription's base when the core is built
 * (upcall._accel). Changed with the subscription's lock held.
 */
typedef struct {
	PyObject_HEAD
	PyObject *dispatcher;	/* _dispatcher: on_event()'s, or None */
	unsigned long long last_seqno;	/* _last_seqno */
	unsigned long long received;	/* _received */
	unsigned long long lost;	/* _lost */
	unsigned long long signalled;	/* _signalled: notifications read (eventfd, fasync) */
	unsigned long long sigio;	/* _sigio: fasync's plain SIGIOs read */
	unsigned long long foreign;	/* _foreign: signals or messages that were not ours */
	unsigned long long malformed;	/* _malformed: netlink messages that could not be read */
	unsigned long long overruns;	/* _overruns: netlink ENOBUFS reports */
	Py_ssize_t busy;	/* _busy: callers inside a read or wait */
	char closed;		/* _closed */
	char drained;		/* _drained: the last read emptied the kernel's queue */
	char missed;		/* _missed: a read(1) came before its event: wait first */
} State;

typedef struct {
	PyObject_HEAD
	PyObject *sub;		/* the Subscription */
	State *st;		/* the same, as its State */
	PyObject *lock;		/* sub._lock, a Lock */
	PyObject *buffer;	/* sub._buffer, a deque */
	PyObject *transport;	/* str, every Event's transport */
	PyTypeObject *event_type;
	PyObject *check_thread;	/* callable: raises if this thread may not read, or NULL */
	PyObject *closed_error;
	PyObject *upcall_error;
	Py_ssize_t offsets[NFIELDS];
	Py_ssize_t min_read;	/* read at least this many records per read step */
	Py_ssize_t batch;	/* records read for read(), poll() (DEFAULT_BATCH) */
	int rounds;		/* read(2)s of a full batch per read step */
	int fd;			/* the subscriber file: the records */
	int wait_fd;		/* what poll(2) waits on for records */
	int wake_fd;		/* the close wake-up */
	int counter_fd;		/* an eventfd whose counter is read first, or -1 */
	int signal_fd;		/* a signalfd drained first (fasync), or -1 */
	int signo;		/* the real-time signal of signal_fd, or of siginfos */
	int siginfos;		/* fd is a signalfd whose signals are the events */
	pid_t tid;		/* the thread check_thread lets read, or 0 */
	int nl_family;		/* fd is a netlink socket of this generic netlink family, or 0 */
	unsigned long long nl_id;	/* the subscriber id its events carry */
	PyObject *decode_datagram;	/* the datagrams not in the kernel's own layout */
	struct mmsghdr *msgs;	/* recvmmsg(2)'s headers, nl_slots of them */
	struct iovec *iovs;
	unsigned char *slots;	/* nl_slots datagrams of NL_SLOT bytes */
	Py_ssize_t nl_slots;
	int read_first;
	int block;		/* wait for ever in a blocking read(2) of block_fd */
	int block_fd;		/* counter_fd if there is one, else fd */
	int blocking;		/* block_fd is in blocking mode now (lock held to change) */
	struct record *buf;
	Py_ssize_t buf_records;
} Reader;

static PyObject *s_finish, *s_extend, *s_popleft;
static PyObject *zero;	/* 0.0: a timeout of none */

/* -- Lock ------------------------------------------------------------------ */

/*
 * The subscription's lock (_lock) with the core: recursive, as
 * threading.RLock, whose place it takes. The Reader takes it with a C call
 * where an RLock is a Python method call with its arguments parsed, two or
 * three times per event. Like RLock's, its owner and depth are read and
 * written with the GIL held.
 */
typedef struct {
	PyObject_HEAD
	pthread_mutex_t mutex;	/* a pthread mutex, not a PyThread lock: see lock_acquire() */
	char ready;		/* mutex initialised */
	unsigned long owner;	/* the holding thread's ident */
	unsigned long depth;	/* 0: free */
} Lock;

static int Lock_init(Lock *self, PyObject *args, PyObject *kwds)
{
	if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
		PyErr_SetString(PyExc_TypeError, "Lock() takes no arguments");
		return -1;
	}
	if (!self->ready) {
		int err = pthread_mutex_init(&self->mutex, NULL);

		if (err) {
			errno = err;
			PyErr_SetFromErrno(PyExc_OSError);
			return -1;
		}
		self->ready = 1;
	}
	return 0;
}

static void Lock_dealloc(Lock *self)
{
	if (self->ready) {
		if (self->depth)
			pthread_mutex_unlock(&self->mutex);
		pthread_mutex_destroy(&self->mutex);
	}
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static int lock_acquire(Lock *lk)
{
	unsigned long me = PyThread_get_thread_ident();

	if (!lk->ready) {
		PyErr_SetString(PyExc_RuntimeError, "Lock is not initialised");
		return -1;
	}
	if (lk->depth && lk->owner == me) {
		lk->depth++;
		return 0;
	}
	/*
	 * pthread_mutex_trylock() is a compare-and-swap. CPython 3.11's
	 * PyThread_acquire_lock() reads the clock first even when it does not
	 * wait (for sem_clockwait()'s deadline): a system call where the
	 * clocksource has no vDSO reading (an emulated HPET), one or two per
	 * event.
	 */
	if (pthread_mutex_trylock(&lk->mutex)) {
		/* Held by another thread, for a short while: wait for it. */
		Py_BEGIN_ALLOW_THREADS
		pthread_mutex_lock(&lk->mutex);
		Py_END_ALLOW_THREADS
	}
	lk->owner = me;
	lk->depth = 1;
	return 0;
}

static int lock_release(Lock *lk)
{
	if (!lk->depth || lk->owner != PyThread_get_thread_ident()) {
		PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
		return -1;
	}
	if (!--lk->depth)
		pthread_mutex_unlock(&lk->mutex);
	return 0;
}

static PyObject *Lock_acquire(Lock *self, PyObject *Py_UNUSED(ignored))
{
	if (lock_acquire(self) < 0)
		return NULL;
	Py_RETURN_TRUE;
}

static PyObject *Lock_release(Lock *self, PyObject *Py_UNUSED(ignored))
{
	if (lock_release(self) < 0)
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *Lock_exit(Lock *self, PyObject *const *Py_UNUSED(args), Py_ssize_t Py_UNUSED(n))
{
	return Lock_release(self, NULL);
}

static PyObject *Lock_is_owned(Lock *self, PyObject *Py_UNUSED(ignored))
{
	return PyBool_FromLong(self->depth && self->owner == PyThread_get_thread_ident());
}

static PyMethodDef Lock_methods[] = {
	{ "acquire", (PyCFunction)Lock_acquire, METH_NOARGS, "Take the lock, waiting for it." },
	{ "release", (PyCFunction)Lock_release, METH_NOARGS, "Give back one acquire()." },
	{ "__enter__", (PyCFunction)Lock_acquire, METH_NOARGS, NULL },
	{ "__exit__", (PyCFunction)(void (*)(void))Lock_exit, METH_FASTCALL, NULL },
	{ "_is_owned", (PyCFunction)Lock_is_owned, METH_NOARGS,
	  "Whether the calling thread holds the lock." },
	{ NULL, NULL, 0, NULL },
};

static PyTypeObject LockType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "upcall._core.Lock",
	.tp_basicsize = sizeof(Lock),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "A recursive lock (threading.RLock's place): a subscription's _lock.",
	.tp_new = PyType_GenericNew,
	.tp_init = (initproc)Lock_init,
	.tp_dealloc = (destructor)Lock_dealloc,
	.tp_methods = Lock_methods,
};

/* -- State ----------------------------------------------------------------- */

static PyMemberDef State_members[] = {
	{ "_dispatcher", Py_T_OBJECT_EX, offsetof(State, dispatcher), 0, NULL },
	{ "_last_seqno", Py_T_ULONGLONG, offsetof(State, last_seqno), 0, NULL },
	{ "_received", Py_T_ULONGLONG, offsetof(State, received), 0, NULL },
	{ "_lost", Py_T_ULONGLONG, offsetof(State, lost), 0, NULL },
	{ "_signalled", Py_T_ULONGLONG, offsetof(State, signalled), 0, NULL },
	{ "_sigio", Py_T_ULONGLONG, offsetof(State, sigio), 0, NULL },
	{ "_foreign", Py_T_ULONGLONG, offsetof(State, foreign), 0, NULL },
	{ "_malformed", Py_T_ULONGLONG, offsetof(State, malformed), 0, NULL },
	{ "_overruns", Py_T_ULONGLONG, offsetof(State, overruns), 0, NULL },
	{ "_busy", Py_T_PYSSIZET, offsetof(State, busy), 0, NULL },
	{ "_closed", Py_T_BOOL, offsetof(State, closed), 0, NULL },
	{ "_drained", Py_T_BOOL, offsetof(State, drained), 0, NULL },
	{ "_missed", Py_T_BOOL, offsetof(State, missed), 0, NULL },
	{ NULL, 0, 0, 0, NULL },
};

static PyObject *State_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
	State *self = (State *)PyType_GenericNew(type, args, kwds);

	if (self)
		self->dispatcher = Py_NewRef(Py_None);
	return (PyObject *)self;
}

static int State_traverse(State *self, visitproc visit, void *arg)
{
	Py_VISIT(self->dispatcher);
	return 0;
}

static int State_clear(State *self)
{
	Py_CLEAR(self->dispatcher);
	return 0;
}

static void State_dealloc(State *self)
{
	PyObject_GC_UnTrack(self);
	State_clear(self);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

PyDoc_STRVAR(State_doc,
"The state of a subscription that a Reader reads through: upcall.Subscription's\n"
"base (see upcall._accel). Its attributes are C fields, all zero (and\n"
"_dispatcher None) until set.");

static PyTypeObject StateType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "upcall._core.State",
	.tp_basicsize = sizeof(State),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
	.tp_doc = State_doc,
	.tp_new = State_new,
	.tp_dealloc = (destructor)State_dealloc,
	.tp_traverse = (traverseproc)State_traverse,
	.tp_clear = (inquiry)State_clear,
	.tp_members = State_members,
};

/* -- small helpers ---------------------------------------------------------- */

static int64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int lock(Reader *self)
{
	return lock_acquire((Lock *)self->lock);
}

/* Release the lock, keeping an exception already raised (if any). */
static int unlock(Reader *self)
{
	PyObject *type, *value, *tb;

	if (!PyErr_Occurred())
		return lock_release((Lock *)self->lock);
	PyErr_Fetch(&type, &value, &tb);
	lock_release((Lock *)self->lock);
	PyErr_Clear();
	PyErr_Restore(type, value, tb);
	return -1;
}

static PyObject *closed(Reader *self, const char *how)
{
	return PyErr_Format(self->closed_error, "the %U subscription %s", self->transport, how);
}

/* -- decoding and accounting ----------------------------------------------- */

/* Append `ev` (a new reference, or NULL: failed) to `out`, giving it up. */
static int append_new(PyObject *out, PyObject *ev)
{
	int r = ev ? PyList_Append(out, ev) : -1;

	Py_XDECREF(ev);
	return r;
}

/* An Event with the slots `v` (references taken over; NULL ones failed). */
static PyObject *new_event(Reader *self, PyObject *v[NFIELDS])
{
	PyObject *ev = self->event_type->tp_alloc(self->event_type, 0);
	int i;

	for (i = 0; ev && i < NFIELDS; i++) {
		if (!v[i])
			Py_CLEAR(ev);
	}
	if (!ev) {
		for (i = 0; i < NFIELDS; i++)
			Py_XDECREF(v[i]);
		return NULL;
	}
	for (i = 0; i < NFIELDS; i++)
		*(PyObject **)((char *)ev + self->offsets[i]) = v[i];
	return ev;
}

static PyObject *make_event(Reader *self, const struct record *rec, PyObject *received)
{
	PyObject *v[NFIELDS];

	v[F_SEQNO] = PyLong_FromUnsignedLongLong(rec->seqno);
	v[F_VALUE] = PyLong_FromUnsignedLongLong(rec->value);
	v[F_SOURCE] = PyLong_FromUnsignedLong(rec->source);
	v[F_TIMESTAMP] = PyLong_FromUnsignedLongLong(rec->timestamp_ns);
	v[F_FLAGS] = PyLong_FromUnsignedLong(rec->flags);
	v[F_TRANSPORT] = Py_NewRef(self->transport);
	v[F_RECEIVED] = Py_NewRef(received);
	v[F_SIGNO] = Py_NewRef(Py_None);
	return new_event(self, v);
}

/*
 * Subscription._account_run(first, last, n). With `late`, a run older than
 * the last seqno accounted is taken too (a blocking read's, see the top):
 * the gap it was counted in shrinks by n.
 */
static int account_run(Reader *self, uint64_t first, uint64_t last, Py_ssize_t n, int late)
{
	State *st = self->st;
	uint64_t prev = st->last_seqno;

	if (late && last < prev && last - first >= (uint64_t)(n - 1) && st->lost >= (uint64_t)n) {
		st->lost -= (uint64_t)n;
		st->received += (uint64_t)n;
		return 0;
	}
	if (first <= prev || last - first < (uint64_t)(n - 1)) {
		PyErr_Format(self->upcall_error,
			     "sequence numbers out of order: %zd events from %llu to %llu after %llu",
			     n, (unsigned long long)first, (unsigned long long)last,
			     (unsigned long long)prev);
		return -1;
	}
	st->lost += last - prev - (uint64_t)n;
	st->last_seqno = last;
	st->received += (uint64_t)n;
	return 0;
}

/* Decode `got` records into Events appended to `out`, and account them. */
static int decode(Reader *self, const struct record *recs, Py_ssize_t got, PyObject *out, int late)
{
	PyObject *received = PyLong_FromLongLong(monotonic_ns());
	Py_ssize_t i;

	if (!received)
		return -1;
	for (i = 0; i < got; i++) {
		if (append_new(out, make_event(self, &recs[i], received)) < 0) {
			Py_DECREF(received);
			return -1;
		}
	}
	Py_DECREF(received);
	return account_run(self, recs[0].seqno, recs[got - 1].seqno, got, late);
}

/* The byte count of a read(2) of records: the records, or -1 with ValueError. */
static Py_ssize_t whole_records(ssize_t n)
{
	if (n % RECORD_SIZE) {
		PyErr_Format(PyExc_ValueError,
			     "%zd bytes is not a whole number of %zd-byte records",
			     (Py_ssize_t)n, RECORD_SIZE);
		return -1;
	}
	return n / RECORD_SIZE;
}

/* Put block_fd in blocking mode or out of it, if it is not so already. Lock held. */
static int set_blocking(Reader *self, int on)
{
	int flags;

	if (self->blocking == on)
		return 0;
	flags = fcntl(self->block_fd, F_GETFL);
	if (flags < 0 ||
	    fcntl(self->block_fd, F_SETFL, on ? flags & ~O_NONBLOCK : flags | O_NONBLOCK) < 0) {
		PyErr_SetFromErrno(PyExc_OSError);
		return -1;
	}
	self->blocking = on;
	return 0;
}

static int grow(Reader *self, Py_ssize_t records)
{
	struct record *buf;

	if (records <= self->buf_records)
		return 0;
	buf = PyMem_Realloc(self->buf, (size_t)records * sizeof(*buf));
	if (!buf) {
		PyErr_NoMemory();
		return -1;
	}
	self->buf = buf;
	self->buf_records = records;
	return 0;
}

/*
 * read(2) up to `want` records (several reads of CHUNK_RECORDS for more),
 * stopping at a short read; append their Events to `out` and account them.
 * Returns the number read, or -1 with an exception. Lock and GIL held.
 */
static Py_ssize_t read_queue(Reader *self, Py_ssize_t want, PyObject *out)
{
	Py_ssize_t total = 0;

	if (self->block_fd == self->fd && set_blocking(self, 0) < 0)
		return -1;
	while (total < want) {
		Py_ssize_t chunk = want - total < CHUNK_RECORDS ? want - total : CHUNK_RECORDS;
		Py_ssize_t got;
		ssize_t n;

		if (grow(self, chunk) < 0)
			return -1;
		do {
			n = read(self->fd, self->buf, (size_t)(chunk * RECORD_SIZE));
		} while (n < 0 && errno == EINTR);
		if (n < 0) {
			if (errno == EAGAIN)
				break;
			PyErr_SetFromErrno(PyExc_OSError);
			return -1;
		}
		got = whole_records(n);
		if (got < 0)
			return -1;
		if (!got)
			break;
		if (decode(self, self->buf, got, out, 0) < 0)
			return -1;
		total += got;
		if (got < chunk)
			break;
	}
	return total;
}

/*
 * FasyncSubscription._take_notifications(): drain the signalfd, counting each
 * siginfo by kind: this file's POLL_IN notification, a plain SIGIO (the
 * kernel's fallback when the real-time signal cannot be queued), or foreign.
 */
#define SIGINFO_SIZE 128	/* struct signalfd_siginfo */
#define SIGINFOS 32		/* per read(2) */
#define SIGINFOS_MAX 1024	/* per read(2) of the signal transport's events */
#define POLL_IN_CODE 1		/* si_code of a SIGIO for "input available" */

static int take_notifications(Reader *self)
{
	unsigned char buf[SIGINFOS * SIGINFO_SIZE];
	State *st = self->st;

	for (;;) {
		ssize_t n = read(self->signal_fd, buf, sizeof(buf)), off;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			PyErr_SetFromErrno(PyExc_OSError);
			return -1;
		}
		for (off = 0; off + SIGINFO_SIZE <= n; off += SIGINFO_SIZE) {
			uint32_t signo;
			int32_t code, fd;

			/* ssi_signo, ssi_code and ssi_fd, at 0, 8 and 20 */
			memcpy(&signo, buf + off, sizeof(signo));
			memcpy(&code, buf + off + 8, sizeof(code));
			memcpy(&fd, buf + off + 20, sizeof(fd));
			if ((int)signo == self->signo && code == POLL_IN_CODE && fd == self->fd)
				st->signalled++;
			else if (signo == SIGIO)
				st->sigio++;
			else
				st->foreign++;
		}
		if (n < (ssize_t)sizeof(buf))
			return 0;
	}
}

/*
 * The signal transport's read (option `siginfos`: fd is its signalfd):
 * SignalSubscription._read_records(). Up to `want` signals in one read(2),
 * each an event: the value in ssi_ptr, the seqno's low 32 bits in
 * ssi_errno (extended past the last one, as extend_seqno() does), the
 * source in ssi_code (UPCALL_SI_CODE(source)). Signals that are not
 * upcall's (another si_code or signal) are counted in _foreign.
 */
#define SI_CODE_BASE (-0x10000)	/* UPCALL_SI_CODE_BASE */
#define SOURCE_MAX 0xFFFF	/* UPCALL_SOURCE_MAX */

static Py_ssize_t read_siginfos(Reader *self, Py_ssize_t want, PyObject *out)
{
	State *st = self->st;
	PyObject *received;
	unsigned char *buf;
	ssize_t off;
	ssize_t n;

	if (want > SIGINFOS_MAX)
		want = SIGINFOS_MAX;
	if (grow(self, (want * SIGINFO_SIZE + RECORD_SIZE - 1) / RECORD_SIZE) < 0)
		return -1;
	buf = (unsigned char *)self->buf;
	do {
		n = read(self->fd, buf, (size_t)(want * SIGINFO_SIZE));
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno == EAGAIN)
			return 0;
		PyErr_SetFromErrno(PyExc_OSError);
		return -1;
	}
	if (n % SIGINFO_SIZE) {
		PyErr_Format(PyExc_ValueError,
			     "signalfd read returned %zd bytes, not a multiple of %d",
			     (Py_ssize_t)n, SIGINFO_SIZE);
		return -1;
	}
	received = PyLong_FromLongLong(monotonic_ns());
	if (!received)
		return -1;
	for (off = 0; off < n; off += SIGINFO_SIZE) {
		PyObject *v[NFIELDS];
		uint32_t signo, low, delta;
		int32_t code;
		uint64_t ptr, seqno;

		/* ssi_signo, ssi_errno, ssi_code and ssi_ptr, at 0, 4, 8 and 48 */
		memcpy(&signo, buf + off, sizeof(signo));
		memcpy(&low, buf + off + 4, sizeof(low));
		memcpy(&code, buf + off + 8, sizeof(code));
		memcpy(&ptr, buf + off + 48, sizeof(ptr));
		if ((int)signo != self->signo || code > SI_CODE_BASE ||
		    code < SI_CODE_BASE - SOURCE_MAX) {
			st->foreign++;
			continue;
		}
		delta = low - (uint32_t)st->last_seqno;
		seqno = st->last_seqno + (delta ? delta : (1ULL << 32));
		st->lost += seqno - st->last_seqno - 1;
		st->last_seqno = seqno;
		st->received++;
		v[F_SEQNO] = PyLong_FromUnsignedLongLong(seqno);
		v[F_VALUE] = PyLong_FromUnsignedLongLong(ptr);
		v[F_SOURCE] = PyLong_FromLong(SI_CODE_BASE - code);
		v[F_TIMESTAMP] = Py_NewRef(Py_None);	/* a siginfo has no room for it */
		v[F_FLAGS] = PyLong_FromLong(0);
		v[F_TRANSPORT] = Py_NewRef(self->transport);
		v[F_RECEIVED] = Py_NewRef(received);
		v[F_SIGNO] = PyLong_FromLong((long)signo);
		if (append_new(out, new_event(self, v)) < 0) {
			Py_DECREF(received);
			return -1;
		}
	}
	Py_DECREF(received);
	/* Whole signals read, foreign ones included: a full read may leave more. */
	return n / SIGINFO_SIZE;
}

/*
 * The netlink transport's read (option `netlink_family`: fd is its socket):
 * NetlinkSubscription._read_records(). Up to `want` datagrams in one
 * recvmmsg(2) (ENOBUFS, the socket's overflow report, counted in
 * _overruns, then read on). A datagram in the kernel's own layout of an
 * UPCALL_CMD_EVENT message (nlmsghdr, genlmsghdr, then SUBSCRIBER, SEQNO,
 * TIMESTAMP, VALUE as u64 attributes and SOURCE as a u32, 76 bytes) is
 * decoded here: an event if its SUBSCRIBER is ours, else foreign. Any
 * other datagram (padding attributes, a later module's attributes, a
 * control message) goes to decode_datagram(bytes), the Python parser,
 * which returns its events, accounted, and counts what is foreign or
 * malformed: the one general parser, so the two cannot disagree.
 */
#define NL_SLOT 256		/* bytes per datagram: netlink.SLOT_SIZE */
#define NL_MAX 1024		/* datagrams per recvmmsg(2): netlink.MAX_BATCH */
#define NL_FAST_SIZE 76		/* nlmsg_len of the kernel's layout: nlmsg.FAST_SIZE */
#define NL_CMD_EVENT 1		/* UPCALL_CMD_EVENT */
#define NL_ATTR_SUBSCRIBER 2	/* UPCALL_ATTR_SUBSCRIBER; SEQNO, TIMESTAMP, VALUE, SOURCE follow */
#define NLMSG_HDR_SIZE 16	/* struct nlmsghdr */

static int nl_grow(Reader *self, Py_ssize_t slots)
{
	struct mmsghdr *msgs;
	struct iovec *iovs;
	unsigned char *buf;
	Py_ssize_t i;

	if (slots <= self->nl_slots)
		return 0;
	msgs = PyMem_Calloc((size_t)slots, sizeof(*msgs));
	iovs = PyMem_Calloc((size_t)slots, sizeof(*iovs));
	buf = PyMem_Malloc((size_t)slots * NL_SLOT);
	if (!msgs || !iovs || !buf) {
		PyMem_Free(msgs);
		PyMem_Free(iovs);
		PyMem_Free(buf);
		PyErr_NoMemory();
		return -1;
	}
	for (i = 0; i < slots; i++) {
		iovs[i].iov_base = buf + i * NL_SLOT;
		iovs[i].iov_len = NL_SLOT;
		msgs[i].msg_hdr.msg_iov = &iovs[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	PyMem_Free(self->msgs);
	PyMem_Free(self->iovs);
	PyMem_Free(self->slots);
	self->msgs = msgs;
	self->iovs = iovs;
	self->slots = buf;
	self->nl_slots = slots;
	return 0;
}

/* The datagram `p` of `len` bytes in the kernel's own layout: 1 and *rec, else 0. */
static int nl_fast(Reader *self, const unsigned char *p, unsigned int len,
		   struct record *rec, uint64_t *subscriber)
{
	uint32_t mlen, source;
	uint16_t type, alen, atype;
	int i;

	if (len != NL_FAST_SIZE)
		return 0;
	memcpy(&mlen, p, sizeof(mlen));
	memcpy(&type, p + 4, sizeof(type));
	if (mlen != NL_FAST_SIZE || type != self->nl_family || p[NLMSG_HDR_SIZE] != NL_CMD_EVENT)
		return 0;
	/* Four u64 attributes of 12 bytes from offset 20, then the u32 SOURCE. */
	for (i = 0; i < 5; i++) {
		memcpy(&alen, p + 20 + 12 * i, sizeof(alen));
		memcpy(&atype, p + 22 + 12 * i, sizeof(atype));
		if (alen != (i < 4 ? 12 : 8) || atype != NL_ATTR_SUBSCRIBER + i)
			return 0;
	}
	memcpy(subscriber, p + 24, sizeof(*subscriber));
	memcpy(&rec->seqno, p + 36, sizeof(rec->seqno));
	memcpy(&rec->timestamp_ns, p + 48, sizeof(rec->timestamp_ns));
	memcpy(&rec->value, p + 60, sizeof(rec->value));
	memcpy(&source, p + 72, sizeof(source));
	rec->source = source;
	rec->flags = 0;
	return 1;
}

static int nl_slow(Reader *self, const unsigned char *p, unsigned int len, PyObject *out)
{
	PyObject *events, *r;

	events = PyObject_CallFunction(self->decode_datagram, "y#", (const char *)p,
				       (Py_ssize_t)len);
	if (!events)
		return -1;
	if (!PyList_Check(events)) {
		PyErr_SetString(PyExc_TypeError, "decode_datagram() must return a list");
		Py_DECREF(events);
		return -1;
	}
	r = PyNumber_InPlaceAdd(out, events);
	Py_DECREF(events);
	if (!r)
		return -1;
	Py_DECREF(r);
	return 0;
}

static Py_ssize_t read_datagrams(Reader *self, Py_ssize_t want, PyObject *out)
{
	State *st = self->st;
	PyObject *received = NULL;
	int n = -1, tries, i;

	if (want > NL_MAX)
		want = NL_MAX;
	if (nl_grow(self, want < 64 ? 64 : want) < 0)
		return -1;
	for (tries = 0; tries < 4;) {
		n = recvmmsg(self->fd, self->msgs, (unsigned int)want, MSG_DONTWAIT, NULL);
		if (n >= 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN)
			return 0;
		if (errno != ENOBUFS) {
			PyErr_SetFromErrno(PyExc_OSError);
			return -1;
		}
		/* Reported before what is still queued: count it, read on. */
		st->overruns++;
		tries++;
	}
	if (n <= 0)
		return 0;
	for (i = 0; i < n; i++) {
		const unsigned char *p = self->slots + (Py_ssize_t)i * NL_SLOT;
		unsigned int len = self->msgs[i].msg_len;
		uint64_t subscriber;
		struct record rec;

		if (self->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
			st->malformed++;
			continue;
		}
		if (!nl_fast(self, p, len, &rec, &subscriber)) {
			if (nl_slow(self, p, len, out) < 0)
				goto fail;
			continue;
		}
		if (subscriber != self->nl_id) {
			st->foreign++;
			continue;
		}
		if (!received && !(received = PyLong_FromLongLong(monotonic_ns())))
			goto fail;
		if (append_new(out, make_event(self, &rec, received)) < 0)
			goto fail;
		if (account_run(self, rec.seqno, rec.seqno, 1, 0) < 0)
			goto fail;
	}
	Py_XDECREF(received);
	return n;
fail:
	Py_XDECREF(received);
	return -1;
}

/* What the transport's _read_records(want) does: notifications, then the queue. */
/*
 * The queue's records into `out`, as _read_records() reads them: read(2)s of
 * at least min_read records, up to `rounds` of them, until one comes back
 * short (the file is then empty). 0, or -1 with an exception.
 */
static int read_rounds(Reader *self, Py_ssize_t want, PyObject *out)
{
	int round;

	if (want < self->min_read)
		want = self->min_read;
	for (round = 0; round < self->rounds; round++) {
		Py_ssize_t got = read_queue(self, want, out);

		if (got < 0)
			return -1;
		if (got < want)
			break;
	}
	return 0;
}

static PyObject *read_step(Reader *self, Py_ssize_t want)
{
	PyObject *out = PyList_New(0);

	if (!out)
		return NULL;
	if (self->siginfos || self->nl_family) {
		if ((self->siginfos ? read_siginfos : read_datagrams)(self, want, out) < 0)
			Py_CLEAR(out);
		return out;
	}
	if (self->counter_fd >= 0) {
		uint64_t count;
		ssize_t n;

		if (set_blocking(self, 0) < 0)
			goto fail;
		n = read(self->counter_fd, &count, sizeof(count));
		if (n == (ssize_t)sizeof(count)) {
			self->st->signalled += count;
		} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			PyErr_SetFromErrno(PyExc_OSError);
			goto fail;
		}
	}
	if (self->signal_fd >= 0 && take_notifications(self) < 0)
		goto fail;
	if (read_rounds(self, want, out) < 0)
		goto fail;
	return out;
fail:
	Py_DECREF(out);
	return NULL;
}

/* -- the buffer ------------------------------------------------------------- */

static int extend(Reader *self, PyObject *list, Py_ssize_t from)
{
	PyObject *part, *r;
	Py_ssize_t n = PyList_GET_SIZE(list);

	if (from >= n)
		return 0;
	part = from ? PyList_GetSlice(list, from, n) : Py_NewRef(list);
	if (!part)
		return -1;
	r = PyObject_CallMethodOneArg(self->buffer, s_extend, part);
	Py_DECREF(part);
	if (!r)
		return -1;
	Py_DECREF(r);
	return from ? PyList_SetSlice(list, from, n, NULL) : 0;
}

/* Up to `take` events from the buffer, oldest first. */
static PyObject *take_buffered(Reader *self, Py_ssize_t take)
{
	Py_ssize_t n = PyObject_Length(self->buffer), i;
	PyObject *out;

	if (n < 0)
		return NULL;
	if (take > n)
		take = n;
	out = PyList_New(take);
	if (!out)
		return NULL;
	for (i = 0; i < take; i++) {
		PyObject *ev = PyObject_CallMethodNoArgs(self->buffer, s_popleft);

		if (!ev) {
			Py_DECREF(out);
			return NULL;
		}
		PyList_SET_ITEM(out, i, ev);
	}
	return out;
}

/* -- guarded use ------------------------------------------------------------ */

/*
 * This thread's id, read once: gettid() is a system call each time (glibc
 * caches nothing), and the signal transport checks it on every read. A
 * thread starts with 0; fork() clears the child's (atfork_child()).
 */
static __thread pid_t this_tid;

static void atfork_child(void)
{
	this_tid = 0;
}

static pid_t current_tid(void)
{
	if (!this_tid)
		this_tid = (pid_t)syscall(SYS_gettid);
	return this_tid;
}

/* Subscription._check_readable(), lock held: dispatching for run(), which
 * reads the events of a subscription that dispatches them. */
static int check_readable(Reader *self, int dispatching)
{
	if (self->st->closed) {
		closed(self, "is closed");
		return -1;
	}
	if (!dispatching && self->st->dispatcher && self->st->dispatcher != Py_None) {
		PyErr_SetString(self->upcall_error,
				"this subscription dispatches its events to on_event() callbacks; "
				"use run() or another subscription to read events");
		return -1;
	}
	if (self->check_thread && !(self->tid && current_tid() == self->tid)) {
		PyObject *x = PyObject_CallNoArgs(self->check_thread);

		if (!x)
			return -1;
		Py_DECREF(x);
	}
	return 0;
}

/* _leave()'s part under the lock: 1 if the close() meanwhile is to be finished. */
static int leave_locked(Reader *self)
{
	return --self->st->busy == 0 && self->st->closed;
}

static int call_finish(Reader *self)
{
	PyObject *r = PyObject_CallMethodNoArgs(self->sub, s_finish);

	if (!r)
		return -1;
	Py_DECREF(r);
	return 0;
}

/* Subscription._leave(), keeping an exception already raised. */
static int leave(Reader *self)
{
	PyObject *type, *value, *tb;
	int finish = 0, err = 0;

	PyErr_Fetch(&type, &value, &tb);
	if (lock(self) < 0) {
		err = -1;
	} else {
		finish = leave_locked(self);
		if (unlock(self) < 0)
			err = -1;
	}
	if (!err && finish && call_finish(self) < 0)
		err = -1;
	if (type) {
		if (err)
			PyErr_Clear();
		PyErr_Restore(type, value, tb);
		return -1;
	}
	return err;
}

/* poll(2) the transport's descriptor and the wake-up: 1 ready, 0 timed out. */
static int wait_readable(Reader *self, int ms)
{
	struct pollfd fds[2] = {
		{ .fd = self->wait_fd, .events = POLLIN },
		{ .fd = self->wake_fd, .events = POLLIN },
	};
	int r;

	Py_BEGIN_ALLOW_THREADS
	r = poll(fds, 2, ms);
	Py_END_ALLOW_THREADS
	if (r < 0) {
		if (errno != EINTR) {
			PyErr_SetFromErrno(PyExc_OSError);
			return -1;
		}
		/* PEP 475: run the handlers, then the caller reads and waits again. */
		return PyErr_CheckSignals() < 0 ? -1 : 1;
	}
	if ((fds[0].revents | fds[1].revents) & POLLNVAL) {
		if (self->st->closed) {
			closed(self, "was closed");
		} else {
			errno = EBADF;
			PyErr_SetFromErrno(PyExc_OSError);
		}
		return -1;
	}
	return r > 0;
}

static int parse_count(PyObject *obj, const char *what, Py_ssize_t min, Py_ssize_t *out)
{
	Py_ssize_t v;

	if (!PyLong_Check(obj)) {
		PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", what,
			     Py_TYPE(obj)->tp_name);
		return -1;
	}
	v = PyLong_AsSsize_t(obj);
	if (v == -1 && PyErr_Occurred()) {
		if (!PyErr_ExceptionMatches(PyExc_OverflowError))
			return -1;
		PyErr_Clear();
		v = PY_SSIZE_T_MIN;	/* out of range either way */
	}
	if (v < min || v > PY_SSIZE_T_MAX / RECORD_SIZE) {
		PyErr_Format(PyExc_ValueError, "%s out of range: %R", what, obj);
		return -1;
	}
	*out = v;
	return 0;
}

/* -- Reader methods --------------------------------------------------------- */

PyDoc_STRVAR(read_queue_doc,
"read_queue(max_records) -> list[Event]\n\n"
"One read(2) of up to max_records records from the queue (without waiting),\n"
"decoded and accounted; [] if none. Call it with the subscription's lock held.");

static PyObject *Reader_read_queue(Reader *self, PyObject *arg)
{
	Py_ssize_t want;
	PyObject *out;

	if (parse_count(arg, "max_records", 1, &want) < 0)
		return NULL;
	out = PyList_New(0);
	if (!out)
		return NULL;
	if (read_queue(self, want, out) < 0) {
		Py_DECREF(out);
		return NULL;
	}
	return out;
}

/* Events read: keep `take` of them, the rest to the buffer (after what it holds). */
static PyObject *hand_out(Reader *self, PyObject *events, Py_ssize_t take)
{
	Py_ssize_t n = PyObject_Length(self->buffer);

	if (n < 0)
		goto fail;
	if (n) {
		if (extend(self, events, 0) < 0)
			goto fail;
		Py_DECREF(events);
		return take_buffered(self, take);
	}
	if (PyList_GET_SIZE(events) > take && extend(self, events, take) < 0)
		goto fail;
	return events;
fail:
	Py_DECREF(events);
	return NULL;
}

/*
 * Records were read (lock held): note whether they emptied the kernel's
 * queue, keep `take` of them (the rest to the buffer). 1 if any came out
 * (lock held); 0 if none (lock released, *events cleared); -1 with an
 * exception, lock held (*events maybe NULL); -2 with an exception, lock
 * released.
 */
static int take_read(Reader *self, PyObject **events, Py_ssize_t take, Py_ssize_t want,
		     Py_ssize_t n, int64_t since)
{
	PyObject *ev, *ts;
	unsigned long long stamp = ULLONG_MAX;

	self->st->drained = PyList_GET_SIZE(*events) < want;
	*events = hand_out(self, *events, take);
	if (!*events)
		return -1;
	if (!PyList_GET_SIZE(*events)) {
		Py_CLEAR(*events);
		return unlock(self) < 0 ? -2 : 0;
	}
	if (since && !n) {
		/* Stamped before this call began: reading first would have
		 * found it, so do that again. */
		ev = PyList_GET_ITEM(*events, 0);
		ts = *(PyObject **)((char *)ev + self->offsets[F_TIMESTAMP]);
		if (ts && ts != Py_None) {
			stamp = PyLong_AsUnsignedLongLong(ts);
			if (stamp == (unsigned long long)-1 && PyErr_Occurred())
				return -1;
		}
		self->st->missed = stamp >= (unsigned long long)since;
	}
	return 1;
}

/*
 * A blocking read(2) failed with `err`: 0 to wait again (the descriptor was
 * put back in non-blocking mode meanwhile, or a signal's handlers ran), -1
 * with an exception.
 */
static int blocking_read_failed(int err)
{
	if (err == EAGAIN)
		return 0;
	if (err == EINTR)
		return PyErr_CheckSignals() < 0 ? -1 : 0;
	errno = err;
	PyErr_SetFromErrno(PyExc_OSError);
	return -1;
}

/*
 * The eventfd's read_blocking(): the counter, blocking; then, with the lock,
 * up to `want` records as read_step() reads them.
 */
static int read_counter_blocking(Reader *self, Py_ssize_t want, PyObject **events)
{
	uint64_t count;
	ssize_t n;
	int err;

	Py_BEGIN_ALLOW_THREADS
	n = read(self->counter_fd, &count, sizeof(count));
	err = errno;
	Py_END_ALLOW_THREADS
	if (n < 0)
		return blocking_read_failed(err);
	if (lock(self) < 0)
		return -1;
	/* close() writes to the eventfd to end this wait. */
	if (self->st->closed) {
		closed(self, "was closed");
		goto unlock_fail;
	}
	if (n == (ssize_t)sizeof(count))
		self->st->signalled += count;
	*events = PyList_New(0);
	if (!*events || read_queue(self, want, *events) < 0)
		goto unlock_fail;
	if (PyList_GET_SIZE(*events))
		return 1;
	/* Another caller took them: wait again. */
	Py_CLEAR(*events);
	return unlock(self) < 0 ? -1 : 0;
unlock_fail:
	unlock(self);
	return -1;
}

/*
 * Before a blocking read, lock held: not closed, and the descriptor blocking.
 * fasync takes its notifications here, before the wait, as read_step() does
 * before its read: a signal that comes later stays pending, so that a wait
 * of the signalfd (fileno(), or a wait with a timeout) sees every record
 * queued after this read.
 */
static int prepare_blocking(Reader *self)
{
	if (self->st->closed) {
		closed(self, "was closed");
		return -1;
	}
	if (self->signal_fd >= 0 && take_notifications(self) < 0)
		return -1;
	return set_blocking(self, 1);
}

/*
 * The wait of a get() without a timeout, for a `block` Reader: read(2) up to
 * `want` records in blocking mode, without the lock (see the top); with
 * `prepared`, the caller ran prepare_blocking() in its last hold of the lock.
 * 1: records read, decoded and accounted into *events, lock held; 0: none
 * (a signal's handlers ran, or another caller put the descriptor back in
 * non-blocking mode): wait again; -1: an exception, lock not held.
 */
static int read_blocking(Reader *self, Py_ssize_t want, int prepared, PyObject **events)
{
	struct record recs[BLOCK_RECORDS];
	Py_ssize_t got;
	ssize_t n;
	int err;

	if (want > BLOCK_RECORDS)
		want = BLOCK_RECORDS;
	if (!prepared) {
		if (lock(self) < 0)
			return -1;
		if (prepare_blocking(self) < 0) {
			unlock(self);
			return -1;
		}
		if (unlock(self) < 0)
			return -1;
	}
	if (self->counter_fd >= 0)
		return read_counter_blocking(self, want, events);

	Py_BEGIN_ALLOW_THREADS
	n = read(self->fd, recs, (size_t)(want * RECORD_SIZE));
	err = errno;
	Py_END_ALLOW_THREADS
	if (n <= 0) {
		/* close() unsubscribed the file: EINVAL (or end of file). */
		if (self->st->closed) {
			closed(self, "was closed");
			return -1;
		}
		if (n == 0) {
			PyErr_SetString(self->upcall_error, "end of file on the subscriber's file");
			return -1;
		}
		return blocking_read_failed(err);
	}
	got = whole_records(n);
	if (got < 0 || lock(self) < 0)
		return -1;
	*events = PyList_New(0);
	if (!*events || decode(self, recs, got, *events, 1) < 0) {
		unlock(self);
		return -1;
	}
	/*
	 * fasync: a full read may have left records that no signal will
	 * announce (the module signals again only for records queued after a
	 * read): empty the queue, as read_step() does. If that fails, the
	 * events read wait in the buffer for the next read.
	 */
	if (self->signal_fd >= 0 && got == want && read_rounds(self, 0, *events) < 0) {
		PyObject *type, *value, *tb;

		PyErr_Fetch(&type, &value, &tb);
		if (extend(self, *events, 0) < 0)
			PyErr_WriteUnraisable(self->sub);
		PyErr_Restore(type, value, tb);
		Py_CLEAR(*events);
		unlock(self);
		return -1;
	}
	return 1;
}

PyDoc_STRVAR(get_doc,
"get(take, batch, timeout) -> list[Event]\n\n"
"Subscription._get(): up to take events, reading up to batch records from the\n"
"kernel, waiting at most timeout seconds (None: for ever, 0: not at all) for\n"
"the first; [] on timeout. ClosedError once the subscription is closed.");

static PyObject *get(Reader *self, Py_ssize_t take, Py_ssize_t batch, PyObject *timeout_obj,
		     int dispatching)
{
	Py_ssize_t n;
	PyObject *events = NULL;
	double timeout = -1.0, deadline = 0.0;
	int forever, tzero, first, prepared = 0, busy_set = 0, r = 0;
	int64_t since = 0;

	forever = timeout_obj == Py_None;
	if (!forever) {
		timeout = PyFloat_AsDouble(timeout_obj);
		if (timeout == -1.0 && PyErr_Occurred())
			return NULL;
	}
	tzero = !forever && timeout == 0.0;

	if (lock(self) < 0)
		return NULL;
	if (check_readable(self, dispatching) < 0)
		goto unlock_fail;
	n = PyObject_Length(self->buffer);
	if (n < 0)
		goto unlock_fail;
	if (n && n >= take) {
		/* Read before and not taken yet: no system call at all. */
		events = take_buffered(self, take);
		return unlock(self) < 0 ? (Py_XDECREF(events), NULL) : events;
	}
	/* A blocking read is one system call whether the event is there yet or
	 * not: no read first for it, and no switch of the descriptor's mode. */
	if (take == 1 && !n && self->read_first && !(forever && self->block)) {
		if (!self->st->missed || tzero) {
			events = read_step(self, batch);
			if (!events)
				goto unlock_fail;
			if (PyList_GET_SIZE(events)) {
				self->st->drained = PyList_GET_SIZE(events) < batch;
				if (extend(self, events, 1) < 0)
					goto unlock_fail;
				return unlock(self) < 0 ? (Py_DECREF(events), NULL) : events;
			}
			/* Found empty: wait before the next read. */
			self->st->drained = 1;
			if (tzero)
				return unlock(self) < 0 ? (Py_DECREF(events), NULL) : events;
			Py_CLEAR(events);
			/* The caller came before the event: until one is found
			 * waiting again, wait first, then read once. */
			self->st->missed = 1;
		} else {
			since = monotonic_ns();
		}
	}
	/* The last read emptied the kernel's queue: wait first (poll says at
	 * once if something came meanwhile). */
	first = self->st->drained && !tzero && !n;
	if (first && forever && self->block) {
		/* The blocking read's preparation in this hold of the lock. */
		if (prepare_blocking(self) < 0)
			goto unlock_fail;
		prepared = 1;
	}
	self->st->busy++;
	busy_set = 1;
	if (unlock(self) < 0)
		goto fail;

	for (;;) {
		Py_ssize_t want;
		int ms;

		if (!first) {
			if (lock(self) < 0)
				goto fail;
			if (self->st->closed) {
				closed(self, "was closed");
				goto unlock_fail;
			}
			n = PyObject_Length(self->buffer);
			if (n < 0)
				goto unlock_fail;
			want = batch - n;
			events = want > 0 ? read_step(self, want) : PyList_New(0);
			if (!events)
				goto unlock_fail;
			r = take_read(self, &events, take, want, n, since);
			if (r > 0)
				goto out_locked;
			if (r < 0)
				goto taken_fail;
		}
		first = 0;
		if (forever && self->block) {
			want = batch < BLOCK_RECORDS ? batch : BLOCK_RECORDS;
			r = read_blocking(self, want, prepared, &events);
			prepared = 0;
			if (r < 0)
				goto fail;
			if (!r)
				continue;
			n = PyObject_Length(self->buffer);
			if (n < 0)
				goto unlock_fail;
			r = take_read(self, &events, take, want, n, since);
			if (r > 0)
				goto out_locked;
			if (r < 0)
				goto taken_fail;
			continue;
		}
		if (forever) {
			ms = -1;
		} else {
			double now = (double)monotonic_ns() / 1e9, left;

			if (deadline == 0.0)
				deadline = now + (timeout > 0.0 ? timeout : 0.0);
			left = deadline - now;
			if (!(left > 0.0)) {
				events = PyList_New(0);
				if (!events)
					goto fail;
				break;
			}
			/* rounded up: never wake early */
			ms = left * 1000.0 + 0.999 > (double)INT_MAX ? INT_MAX
								      : (int)(left * 1000.0 + 0.999);
		}
		r = wait_readable(self, ms);
		if (r < 0)
			goto fail;
		if (self->st->closed) {
			closed(self, "was closed");
			goto fail;
		}
	}
	if (leave(self) < 0) {
		Py_XDECREF(events);
		return NULL;
	}
	return events;

out_locked: {
		/* _leave() in the same hold of the lock. */
		int finish = leave_locked(self);

		busy_set = 0;
		if (unlock(self) < 0)
			goto fail;
		if (finish && call_finish(self) < 0)
			goto fail;
		return events;
	}

taken_fail:
	if (r == -2)
		goto fail;
unlock_fail:
	unlock(self);
fail:
	Py_XDECREF(events);
	if (busy_set)
		leave(self);
	return NULL;
}

static PyObject *ready(Reader *self, PyObject *Py_UNUSED(ignored));

/* get() and fetch(): their (take, batch, timeout). */
static PyObject *get_args(Reader *self, const char *fname, PyObject *const *args,
			  Py_ssize_t nargs, int dispatching)
{
	Py_ssize_t take, batch;

	if (!self->sub)
		return ready(self, NULL);
	if (nargs != 3) {
		PyErr_Format(PyExc_TypeError, "%s() takes 3 arguments (%zd given)", fname, nargs);
		return NULL;
	}
	if (parse_count(args[0], "take", 1, &take) < 0 || parse_count(args[1], "batch", 1, &batch) < 0)
		return NULL;
	return get(self, take, batch, args[2], dispatching);
}

static PyObject *Reader_get(Reader *self, PyObject *const *args, Py_ssize_t nargs)
{
	return get_args(self, "get", args, nargs, 0);
}

PyDoc_STRVAR(fetch_doc,
"fetch(take, batch, timeout) -> list[Event]\n\n"
"Subscription._fetch(): get() for run(), which reads the events of a\n"
"subscription that dispatches them to its on_event() callbacks.");

static PyObject *Reader_fetch(Reader *self, PyObject *const *args, Py_ssize_t nargs)
{
	return get_args(self, "fetch", args, nargs, 1);
}

/*
 * Fast-call arguments into out[] by position (the first npos names) or by
 * name; out[i] is left as it is when not given. 0, or -1 with TypeError.
 */
static int parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs,
		      PyObject *kwnames, const char *const *names, int npos, int nnames,
		      PyObject **out)
{
	Py_ssize_t i, nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
	int j;

	if (nargs > npos) {
		PyErr_Format(PyExc_TypeError, "%s() takes at most %d positional arguments (%zd given)",
			     fname, npos, nargs);
		return -1;
	}
	for (i = 0; i < nargs; i++)
		out[i] = args[i];
	for (i = 0; i < nkw; i++) {
		PyObject *key = PyTuple_GET_ITEM(kwnames, i);

		for (j = 0; j < nnames; j++) {
			if (PyUnicode_CompareWithASCIIString(key, names[j]) == 0)
				break;
		}
		if (j == nnames || j < nargs) {
			PyErr_Format(PyExc_TypeError, j == nnames
				     ? "%s() got an unexpected keyword argument '%U'"
				     : "%s() got multiple values for argument '%U'", fname, key);
			return -1;
		}
		out[j] = args[nargs + i];
	}
	return 0;
}

/* max_events: an int of at least 1, as Subscription.read() has it. */
static int parse_max_events(PyObject *obj, Py_ssize_t *out)
{
	if (!PyLong_Check(obj)) {
		PyErr_Format(PyExc_TypeError, "max_events must be an int, not %.100s",
			     Py_TYPE(obj)->tp_name);
		return -1;
	}
	int overflow;
	long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);

	if (v == -1 && PyErr_Occurred())
		return -1;
	if (overflow < 0 || (!overflow && v < 1)) {
		PyErr_SetString(PyExc_ValueError, "max_events must be at least 1");
		return -1;
	}
	/* More than can ever be read at once is as many as can be. */
	*out = overflow || v > PY_SSIZE_T_MAX / RECORD_SIZE ? PY_SSIZE_T_MAX / RECORD_SIZE
							     : (Py_ssize_t)v;
	return 0;
}

PyDoc_STRVAR(read_doc,
"read($self, /, max_events=64, timeout=None, *, block=True)\n--\n\n"
"Subscription.read(), without a Python frame: the subscription's read\n"
"with the compiled core (see there).");

static PyObject *Reader_read(Reader *self, PyObject *const *args, Py_ssize_t nargs,
			     PyObject *kwnames)
{
	static const char *const names[] = { "max_events", "timeout", "block" };
	PyObject *a[3] = { NULL, Py_None, Py_True };
	Py_ssize_t take = self->batch;
	int block;

	if (!self->sub)
		return ready(self, NULL);
	if (parse_args("read", args, nargs, kwnames, names, 2, 3, a) < 0)
		return NULL;
	if (a[0] && parse_max_events(a[0], &take) < 0)
		return NULL;
	block = PyObject_IsTrue(a[2]);
	if (block < 0)
		return NULL;
	return get(self, take, take > self->batch ? take : self->batch,
		   block ? a[1] : zero, 0);
}

PyDoc_STRVAR(poll_doc,
"poll($self, /, timeout=0.0)\n--\n\n"
"Subscription.poll(), without a Python frame (see there).");

static PyObject *Reader_poll(Reader *self, PyObject *const *args, Py_ssize_t nargs,
			     PyObject *kwnames)
{
	static const char *const names[] = { "timeout" };
	PyObject *a[1] = { NULL }, *events, *ev;

	if (!self->sub)
		return ready(self, NULL);
	a[0] = zero;
	if (parse_args("poll", args, nargs, kwnames, names, 1, 1, a) < 0)
		return NULL;
	events = get(self, 1, self->batch, a[0], 0);
	if (!events)
		return NULL;
	ev = PyList_GET_SIZE(events) ? Py_NewRef(PyList_GET_ITEM(events, 0)) : Py_NewRef(Py_None);
	Py_DECREF(events);
	return ev;
}

/* -- Reader type ------------------------------------------------------------ */

static int event_offsets(PyTypeObject *type, Py_ssize_t *offsets)
{
	int i;

	if (type->tp_dictoffset != 0) {
		PyErr_SetString(PyExc_TypeError, "event_type must have __slots__ and no __dict__");
		return -1;
	}
	for (i = 0; i < NFIELDS; i++) {
		PyObject *d = PyDict_GetItemString(type->tp_dict, field_names[i]);
		PyMemberDef *m;

		if (!d || !Py_IS_TYPE(d, &PyMemberDescr_Type)) {
			PyErr_Format(PyExc_TypeError, "event_type has no slot %s", field_names[i]);
			return -1;
		}
		m = ((PyMemberDescrObject *)d)->d_member;
		if (m->type != Py_T_OBJECT_EX || m->offset <= 0 ||
		    m->offset + (Py_ssize_t)sizeof(PyObject *) > type->tp_basicsize) {
			PyErr_Format(PyExc_TypeError, "event_type's slot %s is not an object slot",
				     field_names[i]);
			return -1;
		}
		offsets[i] = m->offset;
	}
	return 0;
}

static int Reader_clear(Reader *self);

static int Reader_init(Reader *self, PyObject *args, PyObject *kwds)
{
	static char *kwlist[] = { "sub", "fd", "wait_fd", "wake_fd", "transport", "event_type",
				  "closed_error", "upcall_error", "read_first", "counter_fd",
				  "signal_fd", "signo", "siginfos", "check_thread", "tid",
				  "netlink_family", "netlink_id", "decode_datagram", "min_read",
				  "rounds", "block", "batch", NULL };
	PyObject *sub, *transport, *event_type, *closed_error, *upcall_error;
	PyObject *check_thread = Py_None, *decode_datagram = Py_None, *lk, *buffer;
	unsigned long long netlink_id = 0;
	int netlink_family = 0;
	int fd, wait_fd, wake_fd, read_first = 0, counter_fd = -1, signal_fd = -1, signo = 0;
	int rounds = 1, block = 0, siginfos = 0, tid = 0;
	Py_ssize_t min_read = 0, batch = 64;

	if (self->sub) {
		PyErr_SetString(PyExc_RuntimeError, "Reader is initialised already");
		return -1;
	}
	if (!PyArg_ParseTupleAndKeywords(args, kwds, "OiiiUO!OO|$piiipOiiKOnipn", kwlist, &sub,
					 &fd, &wait_fd, &wake_fd, &transport, &PyType_Type,
					 &event_type, &closed_error, &upcall_error, &read_first,
					 &counter_fd, &signal_fd, &signo, &siginfos, &check_thread, &tid,
					 &netlink_family, &netlink_id, &decode_datagram, &min_read,
					 &rounds, &block, &batch))
		return -1;
	if (fd < 0 || wait_fd < 0 || wake_fd < 0) {
		PyErr_SetString(PyExc_ValueError, "fd, wait_fd and wake_fd must be open descriptors");
		return -1;
	}
	if (rounds < 1 || min_read < 0 || min_read > PY_SSIZE_T_MAX / RECORD_SIZE || batch < 1 ||
	    batch > PY_SSIZE_T_MAX / RECORD_SIZE) {
		PyErr_SetString(PyExc_ValueError, "rounds and batch must be >= 1 and min_read >= 0");
		return -1;
	}
	if ((signal_fd >= 0 || siginfos) && (signo < 1 || signo == SIGIO)) {
		PyErr_SetString(PyExc_ValueError, "signal_fd and siginfos need their signo");
		return -1;
	}
	if (siginfos && (counter_fd >= 0 || signal_fd >= 0 || block || read_first)) {
		PyErr_SetString(PyExc_ValueError,
				"siginfos reads one signalfd: no counter_fd, signal_fd, block or read_first");
		return -1;
	}
	if (netlink_family &&
	    (netlink_family < 0 || netlink_family > 0xFFFF || !PyCallable_Check(decode_datagram) ||
	     siginfos || counter_fd >= 0 || signal_fd >= 0 || block || read_first)) {
		PyErr_SetString(PyExc_ValueError,
				"netlink_family (a family id) reads one socket and needs decode_datagram: "
				"no siginfos, counter_fd, signal_fd, block or read_first");
		return -1;
	}
	if (tid < 0) {
		PyErr_SetString(PyExc_ValueError, "tid must be a thread id, or 0");
		return -1;
	}
	if (check_thread != Py_None && !PyCallable_Check(check_thread)) {
		PyErr_SetString(PyExc_TypeError, "check_thread must be a callable or None");
		return -1;
	}
	if (!PyExceptionClass_Check(closed_error) || !PyExceptionClass_Check(upcall_error)) {
		PyErr_SetString(PyExc_TypeError, "closed_error and upcall_error must be exceptions");
		return -1;
	}
	if (!PyObject_TypeCheck(sub, &StateType)) {
		PyErr_Format(PyExc_TypeError, "sub must be a upcall._core.State, not %.100s",
			     Py_TYPE(sub)->tp_name);
		return -1;
	}
	if (event_offsets((PyTypeObject *)event_type, self->offsets) < 0)
		return -1;
	Reader_clear(self);	/* what an __init__ that failed half-way left */
	lk = PyObject_GetAttrString(sub, "_lock");
	if (!lk)
		return -1;
	if (!Py_IS_TYPE(lk, &LockType)) {
		PyErr_Format(PyExc_TypeError, "sub._lock must be a upcall._core.Lock, not %.100s",
			     Py_TYPE(lk)->tp_name);
		Py_DECREF(lk);
		return -1;
	}
	self->lock = lk;
	buffer = PyObject_GetAttrString(sub, "_buffer");
	if (!buffer)
		return -1;
	self->buffer = buffer;
	self->sub = Py_NewRef(sub);
	self->st = (State *)sub;
	self->transport = Py_NewRef(transport);
	self->event_type = (PyTypeObject *)Py_NewRef(event_type);
	self->closed_error = Py_NewRef(closed_error);
	self->upcall_error = Py_NewRef(upcall_error);
	self->check_thread = check_thread == Py_None ? NULL : Py_NewRef(check_thread);
	self->fd = fd;
	self->wait_fd = wait_fd;
	self->wake_fd = wake_fd;
	self->counter_fd = counter_fd;
	self->signal_fd = signal_fd;
	self->signo = signo;
	self->siginfos = siginfos;
	self->tid = tid;
	self->nl_family = netlink_family;
	self->nl_id = netlink_id;
	self->decode_datagram = netlink_family ? Py_NewRef(decode_datagram) : NULL;
	self->read_first = read_first;
	self->min_read = min_read;
	self->batch = batch;
	self->rounds = rounds;
	self->block = block;
	self->block_fd = counter_fd >= 0 ? counter_fd : fd;
	self->blocking = 0;	/* the subscription made it non-blocking */
	return 0;
}

static int Reader_traverse(Reader *self, visitproc visit, void *arg)
{
	Py_VISIT(self->sub);
	Py_VISIT(self->lock);
	Py_VISIT(self->buffer);
	Py_VISIT(self->event_type);
	Py_VISIT(self->check_thread);
	Py_VISIT(self->decode_datagram);
	Py_VISIT(self->closed_error);
	Py_VISIT(self->upcall_error);
	return 0;
}

static int Reader_clear(Reader *self)
{
	Py_CLEAR(self->sub);
	Py_CLEAR(self->lock);
	Py_CLEAR(self->buffer);
	Py_CLEAR(self->transport);
	Py_CLEAR(self->event_type);
	Py_CLEAR(self->check_thread);
	Py_CLEAR(self->decode_datagram);
	Py_CLEAR(self->closed_error);
	Py_CLEAR(self->upcall_error);
	return 0;
}

static void Reader_dealloc(Reader *self)
{
	PyObject_GC_UnTrack(self);
	Reader_clear(self);
	PyMem_Free(self->buf);
	PyMem_Free(self->msgs);
	PyMem_Free(self->iovs);
	PyMem_Free(self->slots);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *ready(Reader *self, PyObject *Py_UNUSED(ignored))
{
	if (!self->sub) {
		PyErr_SetString(PyExc_RuntimeError, "Reader is not initialised");
		return NULL;
	}
	return Py_NewRef(Py_True);
}

static PyObject *Reader_read_queue_checked(Reader *self, PyObject *arg)
{
	if (!self->sub)
		return ready(self, NULL);
	return Reader_read_queue(self, arg);
}

PyDoc_STRVAR(nonblocking_doc,
"nonblocking()\n\n"
"Put the descriptor back in non-blocking mode if a blocking read left it in\n"
"blocking mode: call it with the subscription's lock held before reading it.");

static PyObject *Reader_nonblocking(Reader *self, PyObject *Py_UNUSED(ignored))
{
	if (!self->sub)
		return ready(self, NULL);
	if (set_blocking(self, 0) < 0)
		return NULL;
	Py_RETURN_NONE;
}

static PyMethodDef Reader_methods[] = {
	{ "get", (PyCFunction)(void (*)(void))Reader_get, METH_FASTCALL, get_doc },
	{ "fetch", (PyCFunction)(void (*)(void))Reader_fetch, METH_FASTCALL, fetch_doc },
	{ "read", (PyCFunction)(void (*)(void))Reader_read, METH_FASTCALL | METH_KEYWORDS,
	  read_doc },
	{ "poll", (PyCFunction)(void (*)(void))Reader_poll, METH_FASTCALL | METH_KEYWORDS,
	  poll_doc },
	{ "read_queue", (PyCFunction)Reader_read_queue_checked, METH_O, read_queue_doc },
	{ "nonblocking", (PyCFunction)Reader_nonblocking, METH_NOARGS, nonblocking_doc },
	{ NULL, NULL, 0, NULL },
};

PyDoc_STRVAR(Reader_doc,
"Reader(sub, fd, wait_fd, wake_fd, transport, event_type, closed_error,\n"
"       upcall_error, *, read_first=False, counter_fd=-1, signal_fd=-1, signo=0,\n"
"       siginfos=False, check_thread=None, tid=0, netlink_family=0,\n"
"       netlink_id=0, decode_datagram=None, min_read=0, rounds=1, block=False,\n"
"       batch=64)\n\n"
"The per-event read path of one subscription (see the module).");

static PyTypeObject ReaderType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "upcall._core.Reader",
	.tp_basicsize = sizeof(Reader),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
	.tp_doc = Reader_doc,
	.tp_new = PyType_GenericNew,
	.tp_init = (initproc)Reader_init,
	.tp_dealloc = (destructor)Reader_dealloc,
	.tp_traverse = (traverseproc)Reader_traverse,
	.tp_clear = (inquiry)Reader_clear,
	.tp_methods = Reader_methods,
};

static struct PyModuleDef core_module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "upcall._core",
	.m_doc = "The compiled per-event read path of upcall's transports.",
	.m_size = -1,
};

PyMODINIT_FUNC PyInit__core(void)
{
	PyObject *m;

#define INTERN(var, text)                                   \
	do {                                                \
		if (!(var = PyUnicode_InternFromString(text))) \
			return NULL;                        \
	} while (0)
	INTERN(s_finish, "_finish");
	INTERN(s_extend, "extend");
	INTERN(s_popleft, "popleft");
#undef INTERN
	zero = PyFloat_FromDouble(0.0);
	if (!zero)
		return NULL;
	errno = pthread_atfork(NULL, NULL, atfork_child);
	if (errno)
		return PyErr_SetFromErrno(PyExc_OSError);
	if (PyType_Ready(&LockType) < 0 || PyType_Ready(&StateType) < 0 ||
	    PyType_Ready(&ReaderType) < 0)
		return NULL;
	m = PyModule_Create(&core_module);
	if (!m)
		return NULL;
	if (PyModule_AddIntConstant(m, "RECORD_SIZE", (long)RECORD_SIZE) < 0 ||
	    PyModule_AddObjectRef(m, "Lock", (PyObject *)&LockType) < 0 ||
	    PyModule_AddObjectRef(m, "State", (PyObject *)&StateType) < 0 ||
	    PyModule_AddObjectRef(m, "Reader", (PyObject *)&ReaderType) < 0) {
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
