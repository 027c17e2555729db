/* shale-router logging: the same levelled logfmt lines as shaled, through
 * the shared logger (server/log.c, library shale_log: no other server code
 * is linked). The rt_ names keep the router's call sites short. */
#ifndef SHALE_RT_LOG_H
#define SHALE_RT_LOG_H

#include "log.h"

#define RT_LOG_DEBUG LOG_DEBUG
#define RT_LOG_INFO LOG_INFO
#define RT_LOG_WARN LOG_WARN
#define RT_LOG_ERROR LOG_ERROR
#define rt_log_set_level log_set_level
#define rt_log_get_level log_get_level
#define rt_log_parse_level log_parse_level
#define rt_log_level_name log_level_name
#define rt_log_write log_write
#define rt_debug log_debug
#define rt_info log_info
#define rt_warn log_warn
#define rt_error log_error

#endif
