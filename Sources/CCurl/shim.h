#ifndef MEMPROXY_CCURL_SHIM_H
#define MEMPROXY_CCURL_SHIM_H

#include <curl/curl.h>

// Swift cannot call C variadic functions, and curl's option setters are variadic.
// These typed wrappers are the only way the Swift side touches curl_easy_setopt/getinfo.

static inline CURLcode memproxy_curl_easy_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode memproxy_curl_easy_setopt_off_t(CURL *handle, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode memproxy_curl_easy_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode memproxy_curl_easy_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode memproxy_curl_easy_setopt_slist(CURL *handle, CURLoption option, struct curl_slist *value) {
    return curl_easy_setopt(handle, option, value);
}

typedef size_t (*memproxy_curl_data_callback)(char *ptr, size_t size, size_t nmemb, void *userdata);

static inline CURLcode memproxy_curl_easy_setopt_data_callback(CURL *handle, CURLoption option, memproxy_curl_data_callback cb) {
    return curl_easy_setopt(handle, option, cb);
}

static inline CURLcode memproxy_curl_easy_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}

static inline CURLcode memproxy_curl_easy_getinfo_pointer(CURL *handle, CURLINFO info, void **value) {
    return curl_easy_getinfo(handle, info, value);
}

static inline CURLMcode memproxy_curl_multi_setopt_long(CURLM *multi, CURLMoption option, long value) {
    return curl_multi_setopt(multi, option, value);
}

static inline long memproxy_curl_global_all(void) { return CURL_GLOBAL_ALL; }
static inline size_t memproxy_curl_writefunc_pause(void) { return CURL_WRITEFUNC_PAUSE; }
static inline int memproxy_curl_pause_cont(void) { return CURLPAUSE_CONT; }
static inline int memproxy_curl_error_size(void) { return CURL_ERROR_SIZE; }

#endif
