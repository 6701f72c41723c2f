// Where the local monitor listens unless configured otherwise: loopback only.
export const DEFAULT_MONITOR_PORT = 5001;
export const DEFAULT_MONITOR_HOST = '127.0.0.1';
